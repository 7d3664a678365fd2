package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
)

func testSendStats() sendStats {
	c := func(name string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name})
	}
	return sendStats{waits: c("w"), errors: c("e"), calls: c("c"), messages: c("m")}
}

func listenLoopback(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(8 << 20)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// datagram is what a receiver got: the sender's stream number, its sequence, its size.
type datagram struct{ stream, seq, size int }

// receive reads n datagrams (or until the deadline) from c.
func receive(c *net.UDPConn, n int, out chan<- []datagram) {
	var got []datagram
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(got) < n {
		k, _, err := c.ReadFrom(buf)
		if err != nil {
			break
		}
		got = append(got, datagram{int(buf[0]), int(binary.BigEndian.Uint32(buf[1:])), k})
	}
	out <- got
}

// sizeFor gives runs of equal sizes with a shorter packet now and then, as video
// frames are, plus small audio-like packets: GSO trains and their ends both occur.
func sizeFor(seq int) int {
	switch {
	case seq%11 == 10:
		return 120
	case seq%11 == 9:
		return 700
	default:
		return 1128
	}
}

func TestBatchConnDeliversInOrderPerDestination(t *testing.T) {
	for _, gso := range []bool{false, true} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			sock := listenLoopback(t)
			if gso && !gsoSupported(sock) {
				t.Skip("kernel without UDP_SEGMENT")
			}
			stats := testSendStats()
			bc := newBatchConn(sock, gso, stats, 0)
			defer bc.Close()
			const dests, perWriter = 4, 400
			recv := make([]*net.UDPConn, dests)
			results := make([]chan []datagram, dests)
			for i := range recv {
				recv[i] = listenLoopback(t)
				results[i] = make(chan []datagram, 1)
				go receive(recv[i], perWriter, results[i])
			}
			// One writer per destination (pion writes a connection from one place at a
			// time), all at once, so the flusher sees their packets interleaved.
			var wg sync.WaitGroup
			for d := range dests {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 2048)
					for seq := range perWriter {
						p := buf[:sizeFor(seq)]
						p[0] = byte(d)
						binary.BigEndian.PutUint32(p[1:], uint32(seq))
						if _, err := bc.WriteTo(p, recv[d].LocalAddr()); err != nil {
							t.Errorf("WriteTo: %v", err)
							return
						}
						if seq%50 == 49 {
							time.Sleep(time.Millisecond) // let the receivers keep up
						}
					}
				}()
			}
			wg.Wait()
			for d := range dests {
				got := <-results[d]
				if len(got) != perWriter {
					t.Fatalf("destination %d got %d datagrams, want %d", d, len(got), perWriter)
				}
				for i, g := range got {
					want := datagram{d, i, sizeFor(i)}
					if g != want {
						t.Fatalf("destination %d datagram %d = %+v, want %+v", d, i, g, want)
					}
				}
			}
			sent := dests * perWriter
			// The flusher counts a batch after sendmmsg returns, which may be after the
			// receivers have it all: read the counts once it has ended.
			if err := bc.Close(); err != nil {
				t.Fatal(err)
			}
			msgs := testutilValue(stats.messages)
			t.Logf("%d datagrams in %v messages, %v sendmmsg calls", sent, msgs, testutilValue(stats.calls))
			if !gso && msgs != float64(sent) {
				t.Errorf("without GSO: %v messages, want %d", msgs, sent)
			}
			if d := testutilValue(stats.errors); d != 0 {
				t.Errorf("errors = %v, want 0", d)
			}
		})
	}
}

func TestBatchConnBoundsItsQueue(t *testing.T) {
	sock := listenLoopback(t)
	recv := listenLoopback(t)
	stats := testSendStats()
	const limit, extra = 50, 7
	bc := makeBatchConn(sock, false, stats, limit) // no flusher yet: nothing drains
	write := func(seq int) error {
		buf := make([]byte, 100)
		binary.BigEndian.PutUint32(buf[1:], uint32(seq))
		_, err := bc.WriteTo(buf, recv.LocalAddr())
		return err
	}
	for seq := range limit {
		if err := write(seq); err != nil {
			t.Fatal(err)
		}
	}
	blocked := make(chan error, 1)
	go func() { // one writer, so the order stays known
		for seq := limit; seq < limit+extra; seq++ {
			if err := write(seq); err != nil {
				blocked <- err
				return
			}
		}
		blocked <- nil
	}()
	waitFor(t, 5*time.Second, "a writer waiting on the full queue", func() bool {
		return testutilValue(stats.waits) == 1
	})
	select {
	case err := <-blocked:
		t.Fatalf("write past the bound returned (%v) before anything was sent", err)
	default:
	}
	bc.mu.Lock()
	queued := len(bc.queue)
	bc.mu.Unlock()
	if queued != limit {
		t.Errorf("queued = %d, want the bound %d", queued, limit)
	}
	out := make(chan []datagram, 1)
	go receive(recv, limit+extra, out)
	go bc.flushLoop()
	if err := <-blocked; err != nil {
		t.Fatalf("blocked write: %v", err)
	}
	got := <-out
	if len(got) != limit+extra {
		t.Fatalf("got %d datagrams, want %d", len(got), limit+extra)
	}
	for i, g := range got {
		if g.seq != i {
			t.Fatalf("datagram %d has seq %d, want %d", i, g.seq, i)
		}
	}
	_ = bc.Close()
}

func TestBatchConnCloseReleasesWaitingWriters(t *testing.T) {
	sock := listenLoopback(t)
	recv := listenLoopback(t)
	stats := testSendStats()
	bc := makeBatchConn(sock, false, stats, 1) // no flusher: the second write waits
	buf := make([]byte, 10)
	if _, err := bc.WriteTo(buf, recv.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := bc.WriteTo(buf, recv.LocalAddr()); done <- err }()
	waitFor(t, 5*time.Second, "the writer waiting", func() bool { return testutilValue(stats.waits) == 1 })
	closed := make(chan error, 1)
	go func() { closed <- bc.Close() }()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("waiting write after Close: err = %v, want net.ErrClosed", err)
	}
	go bc.flushLoop() // sees the stop at once; Close returns when it has ended
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestBatchConnCloseSendsQueuedAndStops(t *testing.T) {
	sock := listenLoopback(t)
	recv := listenLoopback(t)
	bc := makeBatchConn(sock, false, testSendStats(), 100)
	buf := make([]byte, 64)
	for range 10 {
		if _, err := bc.WriteTo(buf, recv.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	go bc.flushLoop()
	if err := bc.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-bc.done:
	case <-time.After(5 * time.Second):
		t.Fatal("flusher still running after Close")
	}
	out := make(chan []datagram, 1)
	go receive(recv, 10, out)
	if got := <-out; len(got) != 10 {
		t.Errorf("got %d datagrams queued before Close, want 10", len(got))
	}
	if _, err := bc.WriteTo(buf, recv.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close: err = %v, want net.ErrClosed", err)
	}
	if err := bc.Close(); err == nil {
		t.Errorf("second Close: err = nil, want the socket's already-closed error")
	}
}

func TestBatchConnSendsGSOTrains(t *testing.T) {
	sock := listenLoopback(t)
	if !gsoSupported(sock) {
		t.Skip("kernel without UDP_SEGMENT")
	}
	stats := testSendStats()
	bc := makeBatchConn(sock, true, stats, 1000) // flusher started once all is queued
	defer bc.Close()
	const dests, per = 3, 40
	recv := make([]*net.UDPConn, dests)
	for d := range recv {
		recv[d] = listenLoopback(t)
	}
	buf := make([]byte, 2048)
	for seq := range per { // interleaved, as several viewers' writers are
		for d := range dests {
			p := buf[:sizeFor(seq)]
			p[0] = byte(d)
			binary.BigEndian.PutUint32(p[1:], uint32(seq))
			if _, err := bc.WriteTo(p, recv[d].LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
	}
	go bc.flushLoop()
	for d := range dests {
		out := make(chan []datagram, 1)
		go receive(recv[d], per, out)
		got := <-out
		if len(got) != per {
			t.Fatalf("destination %d got %d datagrams, want %d", d, len(got), per)
		}
		for i, g := range got {
			if want := (datagram{d, i, sizeFor(i)}); g != want {
				t.Fatalf("destination %d datagram %d = %+v, want %+v", d, i, g, want)
			}
		}
	}
	if err := bc.Close(); err != nil { // the flusher has ended: its counts are final
		t.Fatal(err)
	}
	// Per destination: nine 1128-byte packets ended by a 700-byte one make a train,
	// the 120-byte packet after it goes alone; 40 packets make 3 such pairs and a
	// last train of 7: 7 messages.
	if got, want := testutilValue(stats.messages), float64(dests*7); got != want {
		t.Errorf("messages = %v, want %v", got, want)
	}
}

// TestBatchConnRefusedDestinationsDoNotStallOthers: datagrams the kernel refuses (an
// IPv6 address on this IPv4 socket: EAFNOSUPPORT, as single messages and as GSO
// trains) and datagrams to a closed port (ICMP port unreachable) are skipped and
// counted; the viewers around them still get every datagram, in order, and the flusher
// keeps running.
func TestBatchConnRefusedDestinationsDoNotStallOthers(t *testing.T) {
	for _, gso := range []bool{false, true} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			sock := listenLoopback(t)
			if gso && !gsoSupported(sock) {
				t.Skip("kernel without UDP_SEGMENT")
			}
			stats := testSendStats()
			bc := newBatchConn(sock, gso, stats, 0)
			defer bc.Close()
			good := listenLoopback(t)
			closedPort := listenLoopback(t)
			closedAddr := closedPort.LocalAddr()
			closedPort.Close()
			refused := &net.UDPAddr{IP: net.IPv6loopback, Port: 9}
			const per = 200
			out := make(chan []datagram, 1)
			go receive(good, per, out)
			buf := make([]byte, 2048)
			for seq := range per {
				p := buf[:sizeFor(seq)]
				binary.BigEndian.PutUint32(p[1:], uint32(seq))
				for _, dst := range []net.Addr{refused, closedAddr, good.LocalAddr()} {
					if _, err := bc.WriteTo(p, dst); err != nil {
						t.Fatalf("WriteTo %v: %v", dst, err)
					}
				}
				if seq%20 == 0 {
					time.Sleep(time.Millisecond) // several flushes, each meeting all three
				}
			}
			got := <-out
			if len(got) != per {
				t.Fatalf("got %d datagrams, want %d", len(got), per)
			}
			for i, g := range got {
				if want := (datagram{0, i, sizeFor(i)}); g != want {
					t.Fatalf("datagram %d = %+v, want %+v", i, g, want)
				}
			}
			if err := bc.Close(); err != nil { // the flusher has ended: its counts are final
				t.Fatalf("Close: %v", err)
			}
			if got, want := testutilValue(stats.errors), float64(per); got != want {
				t.Errorf("errors = %v, want %v (one per refused datagram)", got, want)
			}
		})
	}
}

func TestWithoutGSOSplitsTrains(t *testing.T) {
	a := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	b := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2}
	p1, p2, p3, p4 := []byte{1}, []byte{2}, []byte{3}, []byte{4}
	in := []ipv4.Message{
		{Addr: a, Buffers: [][]byte{p1, p2}, OOB: []byte{0}},
		{Addr: b, Buffers: [][]byte{p3}},
		{Addr: a, Buffers: [][]byte{p4}, OOB: []byte{0}},
	}
	out := withoutGSO(in)
	want := []struct {
		addr net.Addr
		b    byte
	}{{a, 1}, {a, 2}, {b, 3}, {a, 4}}
	if len(out) != len(want) {
		t.Fatalf("got %d messages, want %d", len(out), len(want))
	}
	for i, m := range out {
		if m.Addr != want[i].addr || len(m.Buffers) != 1 || m.Buffers[0][0] != want[i].b || len(m.OOB) != 0 {
			t.Errorf("message %d = %v %v oob %v, want %v [%d] without OOB", i, m.Addr, m.Buffers, m.OOB, want[i].addr, want[i].b)
		}
	}
	if len(in[0].Buffers) != 2 || len(in[0].OOB) != 1 {
		t.Error("the input batch was changed")
	}
}
