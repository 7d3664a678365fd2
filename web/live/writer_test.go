package live

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
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
	// Pings every 500 ms: a client is dropped after 2 intervals without a pong, which a
	// loaded CI machine (-race, other packages' tests) can take with shorter ones (it
	// did at 50-100 ms; 250 ms left one stall of a quarter second).
	ts := newTestServer(t, Config{ViewersInterval: time.Hour, PingInterval: 500 * time.Millisecond, Writers: 2})
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
	time.Sleep(1100 * time.Millisecond) // two ping ticks, sent by the shards
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
	paused := ts.dialPaused(t, 16384)
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

// TestDropWithHandoffPendingClosesAfterTheFrame: the shard's send stopped mid-frame and
// handed the rest to the writer goroutine, and the connection is dropped (too slow, or
// shutdown) before that goroutine runs. The close frame must follow the whole data
// frame, never land inside it: the client then sees its close code (API: 1008/1013),
// not a corrupt frame and an abnormal closure. The test plays the shard and starts the
// writer itself, so that the drop falls in that window every time.
func TestDropWithHandoffPendingClosesAfterTheFrame(t *testing.T) {
	ts := newTestServer(t, Config{ViewersInterval: time.Hour, Writers: 1})
	ws := ts.dialPaused(t, 16384)
	c := onlyConn(t, ts.hub, ws)
	waitWriter(t, c, false, "after the snapshot")

	c.mu.Lock()
	c.writerOn = true // as if a writer goroutine ran: signal only kicks it
	c.mu.Unlock()
	data := []byte(`{"type":"announce","text":"` + strings.Repeat("z", 600<<10) + `"}`)
	if !c.put(newFrame(0, data, time.Now())) {
		t.Fatal("put: the connection did not go to its shard")
	}
	var scratch []byte
	c.flushFast(&scratch) // the socket takes part of the frame
	c.mu.Lock()
	handedOff := c.handoff != nil
	c.mu.Unlock()
	if !handedOff {
		t.Fatal("the socket took a 600 KiB frame at once; no handoff to test")
	}
	c.drop(websocket.ClosePolicyViolation, "too slow")

	type result struct {
		n    int
		code int
		err  error
	}
	got := make(chan result, 1)
	go func() {
		var r result
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		typ, p, err := ws.ReadMessage()
		if err != nil || typ != websocket.TextMessage {
			r.err = fmt.Errorf("data frame: type %d, %v", typ, err)
		} else {
			r.n = len(p)
			_, _, err = ws.ReadMessage()
			var ce *websocket.CloseError
			if errorAs(err, &ce) {
				r.code = ce.Code
			}
			r.err = err
		}
		got <- r
	}()
	c.writeLoop() // the writer goroutine, late
	r := <-got
	if r.n != len(data) {
		t.Fatalf("data frame: got %d bytes (%v), want %d", r.n, r.err, len(data))
	}
	if r.code != websocket.ClosePolicyViolation {
		t.Fatalf("close: got %v, want code %d", r.err, websocket.ClosePolicyViolation)
	}
}

// TestConnWithoutFileDescriptorIsServed: a hijacked connection that is not a
// syscall.Conn (here TLS served by the process itself) cannot take the shards'
// non-blocking sends; its writer goroutine sends everything instead, and the
// connection lives on (it was closed at the first event after the snapshot).
func TestConnWithoutFileDescriptorIsServed(t *testing.T) {
	h := NewHub(Config{ViewersInterval: time.Hour, PingInterval: 500 * time.Millisecond, // see TestIdleConnectionsHaveOnlyAReader
		Bus: NewMemoryBus(nil, 0), Presence: NewMemoryPresence(nil),
		Snapshots: SnapshotFunc(func(_ context.Context, sid string) (Snapshot, error) {
			return Snapshot{Stream: map[string]string{"id": sid, "status": "live"}}, nil
		})})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeWS(w, r, sid, ServeOptions{})
	}))
	srv.StartTLS()
	defer srv.Close()
	defer h.Close()
	d := websocket.Dialer{TLSClientConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig}
	ws, _, err := d.Dial("wss"+strings.TrimPrefix(srv.URL, "https")+"/ws/"+sid, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	c := &client{t: t, ws: ws, msgs: make(chan msg, 100), closed: make(chan struct{}), closeCode: -1}
	go c.read()
	if m := c.next(t); m.Type != EventSnapshot {
		t.Fatalf("first frame: got %s, want snapshot", m.Type)
	}
	time.Sleep(1100 * time.Millisecond) // two pings meanwhile
	for i := range 3 {
		announce(h, sid, fmt.Sprint(i))
		if m := c.nextOf(t, EventAnnounce); m.Seq != int64(i+1) {
			t.Fatalf("got seq %d, want %d", m.Seq, i+1)
		}
	}
}

// TestDropStopsAWriteAboutToStart: the writer goroutine has taken a batch and is about
// to send it (here: waiting for bc.mu) when the connection is dropped. Its write must
// not set a fresh deadline over the drop's interrupt and wait the whole WriteTimeout
// on a client that does not read: the writes end within about the close's second.
func TestDropStopsAWriteAboutToStart(t *testing.T) {
	ts := newTestServer(t, Config{ViewersInterval: time.Hour, WriteTimeout: 30 * time.Second, Writers: 1})
	ws := ts.dialPaused(t, 16384)
	c := onlyConn(t, ts.hub, ws)
	waitWriter(t, c, false, "after the snapshot")
	time.Sleep(1100 * time.Millisecond) // the writer's next deadline is a new one

	c.bc.mu.Lock() // someone else writing: the shard hands the batch to the writer
	data := []byte(`{"type":"announce","text":"` + strings.Repeat("z", 600<<10) + `"}`)
	if !c.put(newFrame(0, data, time.Now())) {
		c.bc.mu.Unlock()
		t.Fatal("put: the connection did not go to its shard")
	}
	var scratch []byte
	c.flushFast(&scratch)
	taken := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.inWriter && c.writerOn && len(c.queue) == 0
	}
	for deadline := time.Now().Add(5 * time.Second); !taken(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			c.bc.mu.Unlock()
			t.Fatal("the writer goroutine did not take the batch")
		}
	}
	time.Sleep(50 * time.Millisecond) // it waits for bc.mu now
	c.drop(websocket.ClosePolicyViolation, "too slow")
	dropped := time.Now()
	c.bc.mu.Unlock()
	waitWriter(t, c, false, "dropped")
	if took := time.Since(dropped); took > 5*time.Second {
		t.Fatalf("writes ended %v after the drop, want within a few seconds (WriteTimeout is 30s)", took)
	}
}

// TestBehindClientDroppedWithoutNewEvents: a client stops reading, its socket fills
// and events stop coming. It is dropped (1008) once its oldest unsent event is
// MaxBehind old, not only when a new event is queued, nor after the WriteTimeout.
func TestBehindClientDroppedWithoutNewEvents(t *testing.T) {
	ts := newTestServer(t, Config{ViewersInterval: time.Hour, MaxBehind: time.Second, WriteTimeout: 30 * time.Second, Writers: 1})
	slow := ts.dialPaused(t, 4096)
	c := onlyConn(t, ts.hub, slow)
	text := strings.Repeat("x", 4<<10)
	// Well under MaxQueueBytes, in well under MaxBehind: more than the socket buffers
	// hold, so the last ones wait at the server.
	for range 40 {
		announce(ts.hub, sid, text)
	}
	last := time.Now()
	deadline := last.Add(10 * time.Second)
	for ts.hub.localCount(sid) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("client %v behind still connected (MaxBehind 1s, WriteTimeout 30s)", time.Since(last))
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(last)
	c.mu.Lock()
	code := c.closeCode
	c.mu.Unlock()
	if code != websocket.ClosePolicyViolation {
		t.Errorf("got close code %d, want %d", code, websocket.ClosePolicyViolation)
	}
	if took < 900*time.Millisecond {
		t.Errorf("dropped %v after the last event, want once 1s behind", took)
	}
	t.Logf("dropped %v after the last event", took)
}

// TestChurnWhileEventsFlow: connections come and go while events flow, so closed
// descriptors are reused at once by new connections. The shards send without the
// poller's reference count (batchConn.fd): a send racing a close must never reach the
// descriptor's next owner. Every newcomer's first frame is its snapshot and then
// every event follows in order, and the connections that stay get every event once.
// (A guard against regressions, not a proof: the race window is a few microseconds.)
func TestChurnWhileEventsFlow(t *testing.T) {
	ts := newTestServer(t, Config{ViewersInterval: time.Hour})
	stay := make([]*client, 10)
	for i := range stay {
		stay[i] = ts.dial(t, sid, "")
		stay[i].next(t)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				announce(ts.hub, sid, "tick")
				time.Sleep(time.Millisecond) // ≤ 1,000 a second: the staying clients' buffers (10,000) hold them all
			}
		}
	}()
	for round := range 20 {
		cs := make([]*client, 10)
		for i := range cs {
			cs[i] = ts.dial(t, sid, "")
		}
		for i, c := range cs {
			first := c.next(t)
			if first.Type != EventSnapshot {
				t.Fatalf("round %d client %d: first frame %s seq %d, want snapshot", round, i, first.Type, first.Seq)
			}
			last := first.Seq
			for range 3 {
				m := c.next(t)
				if m.Seq != last+1 {
					t.Fatalf("round %d client %d: got %s seq %d after %d", round, i, m.Type, m.Seq, last)
				}
				last = m.Seq
			}
			c.ws.Close() // mid-stream: the server's sends to it race its close
		}
	}
	close(stop)
	<-done
	for i, c := range stay {
		last := int64(0)
		for {
			var m msg
			select {
			case m = <-c.msgs:
			case <-time.After(200 * time.Millisecond):
			}
			if m.Type == "" {
				break
			}
			if last != 0 && m.Seq != last+1 {
				t.Fatalf("staying client %d: got seq %d after %d", i, m.Seq, last)
			}
			last = m.Seq
		}
		if last == 0 {
			t.Fatalf("staying client %d got no events", i)
		}
	}
}

// TestRoomConnsAddRemove: the room's connection slice stays a set with correct indices
// through joins and leaves in any order (a second remove is a no-op).
func TestRoomConnsAddRemove(t *testing.T) {
	r := &room{last: -1}
	cs := make([]*conn, 6)
	for i := range cs {
		cs[i] = &conn{}
		r.add(cs[i])
	}
	r.add(cs[2]) // twice: once in the room
	check := func(want ...*conn) {
		t.Helper()
		if len(r.conns) != len(want) {
			t.Fatalf("%d connections, want %d", len(r.conns), len(want))
		}
		for i, c := range r.conns {
			if c.roomIdx != i || !c.inRoom {
				t.Fatalf("connection at %d has index %d (in room %v)", i, c.roomIdx, c.inRoom)
			}
		}
		for _, c := range want {
			if !c.inRoom || r.conns[c.roomIdx] != c {
				t.Fatalf("a connection is missing")
			}
		}
	}
	check(cs...)
	if n := r.remove(cs[1]); n != 5 {
		t.Fatalf("remove: %d left, want 5", n)
	}
	r.remove(cs[1])
	r.remove(cs[5]) // the last one
	r.remove(cs[0])
	check(cs[2], cs[3], cs[4])
	for _, c := range []*conn{cs[3], cs[2], cs[4]} {
		r.remove(c)
	}
	check()
	if cap(r.conns) > 0 && r.conns[:cap(r.conns)][0] != nil {
		t.Fatal("a removed connection is still referenced")
	}
}
