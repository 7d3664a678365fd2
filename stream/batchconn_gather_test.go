package stream

import (
	"testing"
	"time"
)

// A gathering flusher holds the first packet of a burst for its gather time and sends
// what came meanwhile in one sendmmsg (with GSO: one train).
func TestBatchConnGathersBursts(t *testing.T) {
	sock := listenLoopback(t)
	recv := listenLoopback(t)
	gso := gsoSupported(sock)
	stats := testSendStats()
	const gather = 40 * time.Millisecond
	bc := newBatchConn(sock, gso, stats, gather)
	defer bc.Close()
	start := time.Now()
	p := make([]byte, 1000)
	for i := range 5 {
		p[0] = byte(i)
		if _, err := bc.WriteTo(p, recv.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // a paced burst reaches the batcher over time
	}
	buf := make([]byte, 2048)
	_ = recv.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range 5 {
		n, _, err := recv.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if i == 0 {
			if waited := time.Since(start); waited < gather*3/4 {
				t.Fatalf("first datagram after %v: the flusher did not gather (%v)", waited, gather)
			}
		}
		if n != len(p) || buf[0] != byte(i) {
			t.Fatalf("datagram %d: %d bytes, first byte %d", i, n, buf[0])
		}
	}
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	calls, msgs := testutilValue(stats.calls), testutilValue(stats.messages)
	t.Logf("5 datagrams in %v messages, %v sendmmsg calls (gso %v)", msgs, calls, gso)
	if calls != 1 {
		t.Errorf("sendmmsg calls = %v, want 1", calls)
	}
	if gso && msgs != 1 {
		t.Errorf("messages = %v, want 1 GSO train", msgs)
	}
}

// The gather time is a bound, not a delay for big batches: a queue that reaches
// gatherMax goes out at once.
func TestBatchConnGatherEndsAtFullBatch(t *testing.T) {
	sock := listenLoopback(t)
	recv := listenLoopback(t)
	stats := testSendStats()
	bc := newBatchConn(sock, false, stats, time.Hour)
	defer bc.Close()
	p := make([]byte, 100)
	for range gatherMax {
		if _, err := bc.WriteTo(p, recv.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	_ = recv.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	for i := range gatherMax {
		if _, _, err := recv.ReadFrom(buf); err != nil {
			t.Fatalf("datagram %d of %d: %v (the flusher kept waiting)", i, gatherMax, err)
		}
	}
}

// Close during a gather sends what is queued.
func TestBatchConnCloseWhileGathering(t *testing.T) {
	sock := listenLoopback(t)
	recv := listenLoopback(t)
	bc := newBatchConn(sock, false, testSendStats(), time.Hour)
	if _, err := bc.WriteTo([]byte("last"), recv.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the flusher is waiting
	done := make(chan error, 1)
	go func() { done <- bc.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for the gather time")
	}
	_ = recv.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, _, err := recv.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "last" {
		t.Fatalf("got %q, %v; want the queued datagram", buf[:n], err)
	}
}
