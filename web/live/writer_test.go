package live

import (
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// writerOn reports whether c has a writer goroutine running.
func writerOn(c *conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writerOn
}

// waitWriter waits until c's writer goroutine is running (want) or gone (!want).
func waitWriter(t *testing.T, c *conn, want bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for writerOn(c) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: writer goroutine running: got %v, want %v", what, !want, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIdleConnectionsHaveOnlyAReader: once their first frames are out, connections
// that keep up (events and pings sent by the shards) hold one goroutine each, the
// reader; a writer goroutine is not parked per connection.
func TestIdleConnectionsHaveOnlyAReader(t *testing.T) {
	ts := newTestServer(t, Config{ViewersInterval: time.Hour, PingInterval: 50 * time.Millisecond, Writers: 2})
	time.Sleep(50 * time.Millisecond) // the hub's own goroutines are up
	base := runtime.NumGoroutine()
	const n = 30
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = ts.dial(t, sid, "")
		cs[i].next(t)
	}
	for i := range 5 {
		announce(ts.hub, sid, "x")
		for _, c := range cs {
			if m := c.nextOf(t, EventAnnounce); m.Seq != int64(i+1) {
				t.Fatalf("got seq %d, want %d", m.Seq, i+1)
			}
		}
	}
	time.Sleep(200 * time.Millisecond) // a few ping ticks, sent by the shards
	for _, c := range cs {
		waitWriter(t, onlyConn(t, ts.hub, c.ws), false, "idle connection")
	}
	// Per connection: the server's reader and the test client's reader.
	if got, want := runtime.NumGoroutine()-base, 2*n; got > want+2 {
		t.Fatalf("goroutines for %d idle connections: got %d, want ≤ %d", n, got, want+2)
	}
}

// TestWriterGoroutineComesAndGoes: a client that stops reading gets a writer goroutine
// once its socket would block; when it reads again and has caught up the goroutine
// ends and the shard sends again; blocking a second time starts a new one. Every
// event arrives once, in order; no goroutine outlives the connections.
func TestWriterGoroutineComesAndGoes(t *testing.T) {
	base := runtime.NumGoroutine()
	// Default ping interval: a paused client answers no pings and would be dropped.
	ts := newTestServer(t, Config{ViewersInterval: time.Hour, Writers: 2})
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(16384)
		}
		return c, err
	}}
	paused, _, err := d.Dial(ts.url+"/ws/"+sid, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer paused.Close()
	var snap msg
	if err := paused.ReadJSON(&snap); err != nil || snap.Type != EventSnapshot {
		t.Fatalf("first frame: got %s (%v), want snapshot", snap.Type, err)
	}
	c := onlyConn(t, ts.hub, paused)
	waitWriter(t, c, false, "after the snapshot")
	text := strings.Repeat("z", 3000)
	var seq int64
	for round := range 2 {
		// Block: announce until the writer goroutine has taken over.
		start := seq
		for !writerOn(c) {
			if seq-start > 300 { // 900 KB: under the 1 MiB limit
				t.Fatalf("round %d: no writer goroutine after %d events to a paused client", round, seq-start)
			}
			announce(ts.hub, sid, text)
			seq++
			time.Sleep(time.Millisecond)
		}
		// Catch up: read everything sent so far, in order.
		paused.SetReadDeadline(time.Now().Add(10 * time.Second))
		for want := start + 1; want <= seq; {
			var m msg
			if err := paused.ReadJSON(&m); err != nil {
				t.Fatalf("round %d, waiting for seq %d: %v", round, want, err)
			}
			if m.Type != EventAnnounce {
				continue
			}
			if m.Seq != want {
				t.Fatalf("round %d: got seq %d, want %d", round, m.Seq, want)
			}
			want++
		}
		waitWriter(t, c, false, "caught up")
		c.mu.Lock()
		inWriter := c.inWriter
		c.mu.Unlock()
		if inWriter {
			t.Fatalf("round %d: caught up, but the writes stayed with the writer goroutine", round)
		}
	}
	paused.Close()
	ts.hub.Close()
	ts.srv.Close()
	waitGoroutines(t, base)
}
