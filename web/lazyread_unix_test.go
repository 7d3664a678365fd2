//go:build unix

package web

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lazyTestServer serves h on a loopback listener, through LazyBackgroundReads when lazy.
func lazyTestServer(t *testing.T, lazy bool, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	var l net.Listener = ln
	if lazy {
		l = LazyBackgroundReads(srv, ln)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// readSyscalls is the process's read(2) count so far (/proc/self/io's syscr).
func readSyscalls(t *testing.T) int {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skip("no /proc/self/io:", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no syscr in /proc/self/io")
	return 0
}

// parkingHandler reads the body, then parks a moment (as a hold waits for its batch),
// then answers 201 with a small JSON body.
var parkingHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	time.Sleep(200 * time.Microsecond)
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusCreated)
	w.Write([]byte("{\"ok\":true}\n"))
})

// postMany sends n POSTs with a body, one after another on one connection, each answer
// read before the next request goes.
func postMany(t *testing.T, addr string, n int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("POST /api/cart/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	for range n {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || string(body) != "{\"ok\":true}\n" {
			t.Fatalf("answer %d %q", resp.StatusCode, body)
		}
	}
}

// TestLazyBackgroundReadsOneReadLess: a request whose handler parks costs the server one
// read(2) less through LazyBackgroundReads (net/http's background read no longer reads
// before the socket is readable: EAGAIN), counted over the process (client and both
// servers alike otherwise), plain and lazy rounds alternating.
func TestLazyBackgroundReadsOneReadLess(t *testing.T) {
	plain, lazy := lazyTestServer(t, false, parkingHandler), lazyTestServer(t, true, parkingHandler)
	const n = 100
	postMany(t, plain, 5) // connections, buffers and goroutines warm
	postMany(t, lazy, 5)
	var reads [2]int
	for range 3 {
		for i, addr := range []string{plain, lazy} {
			before := readSyscalls(t)
			postMany(t, addr, n)
			reads[i] += readSyscalls(t) - before
		}
	}
	perPlain, perLazy := float64(reads[0])/(3*n), float64(reads[1])/(3*n)
	t.Logf("read(2) per request: plain %.2f, lazy %.2f", perPlain, perLazy)
	if perLazy > perPlain-0.7 {
		t.Fatalf("read(2) per request: lazy %.2f, plain %.2f: want about one less", perLazy, perPlain)
	}
}

// TestLazyBackgroundReadsSeeHangUp: a client that hangs up while its request's handler
// is parked still cancels the request's context, and a request sent in the same packet
// as the one before it (pipelined) is still served.
func TestLazyBackgroundReadsSeeHangUp(t *testing.T) {
	parked, cancelled := make(chan struct{}, 1), make(chan struct{}, 1)
	addr := lazyTestServer(t, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/quick" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		parked <- struct{}{}
		select {
		case <-r.Context().Done():
			cancelled <- struct{}{}
		case <-time.After(10 * time.Second):
		}
	}))

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Two requests in one write: the second waits in net/http's buffer while the first's
	// handler runs.
	two := "POST /quick HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}" + "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n"
	if _, err := c.Write([]byte(two)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i := range 2 {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("pipelined answer %d: %v %v", i, resp, err)
		}
	}

	if _, err := c.Write([]byte("POST /park HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-parked:
	case <-time.After(5 * time.Second):
		t.Fatal("handler never ran")
	}
	c.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the parked request's context was not cancelled when its client hung up")
	}
}

// TestLazyBackgroundReadsHijackedReadsPlain: a hijacked connection's one-byte reads are
// the TCPConn's: the second of two bytes that came in one packet is read at once (a read
// waiting for readiness first would wait for a packet that never comes).
func TestLazyBackgroundReadsHijackedReadsPlain(t *testing.T) {
	got := make(chan string, 1)
	ready := make(chan struct{})
	addr := lazyTestServer(t, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			got <- "hijack: " + err.Error()
			return
		}
		defer conn.Close()
		if brw.Reader.Buffered() > 0 {
			got <- "bytes buffered before the test wrote them"
			return
		}
		close(ready)
		var out bytes.Buffer
		b := make([]byte, 1)
		for range 2 {
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := conn.Read(b); err != nil {
				got <- "read: " + err.Error()
				return
			}
			out.Write(b)
		}
		got <- out.String()
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /ws/x HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case s := <-got:
		t.Fatal(s)
	case <-time.After(5 * time.Second):
		t.Fatal("no hijack")
	}
	time.Sleep(20 * time.Millisecond) // the handler's first read waiting for the bytes
	if _, err := c.Write([]byte("xy")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "xy" {
		t.Fatalf("hijacked reads: %q, want \"xy\"", s)
	}
}
