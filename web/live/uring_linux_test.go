package live

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair is a connected loopback TCP pair: the server side's descriptor (its
// *net.TCPConn kept open by the caller) and the client.
func tcpPair(t *testing.T) (srv *net.TCPConn, fd int, cli *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	srv, cli = s.(*net.TCPConn), c.(*net.TCPConn)
	t.Cleanup(func() { srv.Close(); cli.Close() })
	raw, err := srv.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(f uintptr) { fd = int(f) })
	return srv, fd, cli
}

// TestSendRingResults: one io_uring batch of sends comes back with each send's own
// result, as sendNow's send(2) would give it: all sent (the peer gets exactly those
// bytes), EAGAIN on a full socket (not armed to send later: MSG_DONTWAIT), a short
// send on a small send buffer, EBADF on a closed descriptor, EPIPE (no SIGPIPE) on a
// shut-down socket.
func TestSendRingResults(t *testing.T) {
	r := newSendRing(8)
	if r == nil {
		t.Skip("io_uring_setup refused here: the shards send with sendNow (TestRingSetupFailureFallsBack)")
	}
	defer r.close()
	if r.batch() != 8 {
		t.Fatalf("batch: got %d, want 8", r.batch())
	}

	_, okFD, okCli := tcpPair(t)
	full, fullFD, _ := tcpPair(t)
	full.SetWriteBuffer(4096)
	// Fill it: the peer never reads. Full means a byte still does not fit after a
	// pause, twice: on a loaded machine the loopback receive work (and the peer's
	// receive window growing) can free room after the first refusal.
	for settled := 0; settled < 2; {
		if n, _ := sendNow(fullFD, []byte{1}); n == 0 {
			settled++
			time.Sleep(50 * time.Millisecond)
			continue
		}
		settled = 0
		if _, errno := sendNow(fullFD, make([]byte, 65536)); errno != 0 && errno != syscall.EAGAIN {
			t.Fatal(errno)
		}
	}
	short, shortFD, shortCli := tcpPair(t)
	short.SetWriteBuffer(4096)
	closedSrv, closedFD, _ := tcpPair(t)
	closedSrv.CloseWrite()
	badFD, err := syscall.Dup(okFD)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Close(badFD) // a descriptor number no longer open

	msg := []byte("hello through io_uring")
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: more than the socket takes at once
	fds := []int{okFD, fullFD, shortFD, badFD, closedFD}
	bufs := [][]byte{msg, msg, big, msg, msg}
	res := make([]int32, len(fds))
	r.sendAll(fds, bufs, res)

	if res[0] != int32(len(msg)) {
		t.Fatalf("healthy socket: got %d, want %d", res[0], len(msg))
	}
	if res[1] != -int32(syscall.EAGAIN) {
		t.Fatalf("full socket: got %d, want -EAGAIN", res[1])
	}
	if res[2] <= 0 || int(res[2]) >= len(big) {
		t.Fatalf("1 MiB on a 4 KiB send buffer: got %d, want a short send", res[2])
	}
	if res[3] != -int32(syscall.EBADF) {
		t.Fatalf("closed descriptor: got %d, want -EBADF", res[3])
	}
	if res[4] != -int32(syscall.EPIPE) {
		t.Fatalf("shut-down socket: got %d, want -EPIPE", res[4])
	}
	got := make([]byte, len(msg))
	okCli.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(okCli, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("peer got %q (%v), want %q", got, err, msg)
	}
	gotBig := make([]byte, res[2])
	shortCli.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(shortCli, gotBig); err != nil || !bytes.Equal(gotBig, big[:res[2]]) {
		t.Fatalf("short send's peer: %v, or not the first %d bytes", err, res[2])
	}

	// The ring is reused batch after batch: its indices wrap.
	for i := range 40 {
		m := []byte(fmt.Sprint("again ", i))
		r.sendAll([]int{okFD}, [][]byte{m}, res[:1])
		if res[0] != int32(len(m)) {
			t.Fatalf("batch %d: got %d, want %d", i, res[0], len(m))
		}
		got := make([]byte, len(m))
		if _, err := io.ReadFull(okCli, got); err != nil || !bytes.Equal(got, m) {
			t.Fatalf("batch %d: peer got %q (%v)", i, got, err)
		}
	}
}

// shardRingSends sums the sends h's shards made through io_uring and says whether
// every shard has a ring.
func shardRingSends(h *Hub) (sends uint64, allRings bool) {
	allRings = true
	for _, s := range h.writers.shards {
		sends += s.ringSends.Load()
		allRings = allRings && s.ring != nil
	}
	return sends, allRings
}

// fanOutExactlyOnce: 50 clients get 60 events each exactly once, in order.
func fanOutExactlyOnce(t *testing.T, ts *testServer) {
	t.Helper()
	const clients, events = 50, 60
	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = ts.dial(t, sid, "")
		cs[i].next(t)
	}
	for i := range events {
		announce(ts.hub, sid, fmt.Sprint(i))
		if i%10 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	for i, c := range cs {
		for want := int64(1); want <= events; want++ {
			if m := c.next(t); m.Type != EventAnnounce || m.Seq != want {
				t.Fatalf("client %d: got %s seq %d, want announce seq %d", i, m.Type, m.Seq, want)
			}
		}
		select {
		case m := <-c.msgs:
			t.Fatalf("client %d: extra frame %s seq %d", i, m.Type, m.Seq)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestShardsSendThroughRing: with io_uring on (4 sends per io_uring_enter, so a pass
// over 25 connections takes several), the shards' sends go through their rings and
// every client gets every event once, in order.
func TestShardsSendThroughRing(t *testing.T) {
	if r := newSendRing(4); r == nil {
		t.Skip("io_uring_setup refused here")
	} else {
		r.close()
	}
	ts := newTestServer(t, Config{ViewersInterval: time.Hour, Writers: 2, SendBatch: 4})
	fanOutExactlyOnce(t, ts)
	sends, all := shardRingSends(ts.hub)
	// A send carries all the frames queued meanwhile (joined in the shard's arena):
	// at least one per client.
	if !all || sends < 50 {
		t.Fatalf("ring sends: got %d (every shard a ring: %v), want ≥ 50", sends, all)
	}
}

// TestRingOffSendsWithSendNow: SendBatch < 0 (and LIVECART_LIVE_IOURING=0) keeps
// io_uring out; the shards send with sendNow and deliver the same.
func TestRingOffSendsWithSendNow(t *testing.T) {
	t.Setenv("LIVECART_LIVE_IOURING", "0")
	for _, cfg := range []Config{{SendBatch: -1}, {}} {
		cfg.ViewersInterval, cfg.Writers = time.Hour, 2
		ts := newTestServer(t, cfg)
		for _, s := range ts.hub.writers.shards {
			if s.ring != nil {
				t.Fatalf("SendBatch %d, LIVECART_LIVE_IOURING=0: a shard has a ring", cfg.SendBatch)
			}
		}
		fanOutExactlyOnce(t, ts)
		if sends, _ := shardRingSends(ts.hub); sends != 0 {
			t.Fatalf("ring sends with io_uring off: %d", sends)
		}
		ts.hub.Close()
		ts.srv.Close()
	}
}

// TestRingSetupFailureFallsBack: io_uring_setup really fails (more entries than the
// kernel allows: EINVAL whatever the flags) and the shards send with sendNow.
func TestRingSetupFailureFallsBack(t *testing.T) {
	if r := newSendRing(1 << 20); r != nil {
		r.close()
		t.Fatal("io_uring_setup of 1<<20 entries succeeded; want EINVAL (IORING_MAX_ENTRIES is 32768)")
	}
	ts := newTestServer(t, Config{ViewersInterval: time.Hour, Writers: 2, SendBatch: 1 << 20})
	fanOutExactlyOnce(t, ts)
	if sends, any := shardRingSends(ts.hub); any || sends != 0 {
		t.Fatalf("after a failed setup: rings %v, ring sends %d; want none", any, sends)
	}
}

func TestRingBatchFromEnv(t *testing.T) {
	for v, want := range map[string]int{"": ringBatchDefault, "1": ringBatchDefault, "on": ringBatchDefault,
		"0": 0, "off": 0, "64": 64, "2": 2, "4096": 4096, "5000": ringBatchDefault, "x": ringBatchDefault} {
		t.Setenv("LIVECART_LIVE_IOURING", v)
		got, err := ringBatchFromEnv()
		if got != want {
			t.Errorf("LIVECART_LIVE_IOURING=%q: got %d, want %d", v, got, want)
		}
		if bad := v == "5000" || v == "x"; (err != nil) != bad {
			t.Errorf("LIVECART_LIVE_IOURING=%q: error %v, want one: %v", v, err, bad)
		}
	}
}

// TestRingBrokenFallsBack: when io_uring_enter fails (the ring's descriptor made
// /dev/null behind the shard's back, so the call answers an error), the sends of
// that batch go to their writer goroutines as a full socket's would and the rest of
// the pass, and later passes, use sendNow: every client still gets every event once,
// in order, and none is dropped (the batch's connections were closed with EIO before).
func TestRingBrokenFallsBack(t *testing.T) {
	if r := newSendRing(4); r == nil {
		t.Skip("io_uring_setup refused here")
	} else {
		r.close()
	}
	ts := newTestServer(t, Config{ViewersInterval: time.Hour, Writers: 1, SendBatch: 4})
	null, err := syscall.Open("/dev/null", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(null)
	s := ts.hub.writers.shards[0]
	if s.ring == nil {
		t.Fatal("the shard has no ring")
	}
	// The shard is idle (no client yet): its next io_uring_enter meets /dev/null.
	if err := syscall.Dup3(null, s.ring.fd, syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	fanOutExactlyOnce(t, ts)
	ts.hub.Close() // the shard's goroutine has ended: its fields are ours to read
	if !s.ring.broken {
		t.Fatal("the ring is not marked broken after io_uring_enter failed")
	}
}

// TestSendRingWaitsForLateCompletions: sendAll's submission is a raw io_uring_enter that
// does not wait; a send the kernel finishes after it returns (here every send is made
// IOSQE_ASYNC, so the kernel's worker runs it) is waited for before sendAll returns.
// Every result is the send's own and every peer gets its bytes.
func TestSendRingWaitsForLateCompletions(t *testing.T) {
	r := newSendRing(16)
	if r == nil {
		t.Skip("io_uring_setup refused here")
	}
	defer r.close()
	r.sqeFlags = ioSQEAsync
	const pairs = 12
	fds := make([]int, pairs)
	clis := make([]*net.TCPConn, pairs)
	for i := range fds {
		_, fds[i], clis[i] = tcpPair(t)
	}
	res := make([]int32, pairs)
	for round := range 20 {
		bufs := make([][]byte, pairs)
		for i := range bufs {
			bufs[i] = []byte(fmt.Sprintf("round %d to %d", round, i))
		}
		r.sendAll(fds, bufs, res)
		if r.broken {
			t.Fatalf("round %d: the ring broke", round)
		}
		for i, c := range clis {
			if res[i] != int32(len(bufs[i])) {
				t.Fatalf("round %d, socket %d: result %d, want %d", round, i, res[i], len(bufs[i]))
			}
			got := make([]byte, len(bufs[i]))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, bufs[i]) {
				t.Fatalf("round %d, socket %d: peer got %q (%v), want %q", round, i, got, err, bufs[i])
			}
		}
	}
}
