package stream

import (
	"encoding/binary"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestBatchConnFallsBackWhenGSORefused: on a socket without UDP checksums
// (SO_NO_CHECK) the kernel answers every GSO send with EINVAL. The batcher sends the
// refused train packet by packet, turns GSO off for good and sends the rest of the
// batch and all later batches as plain messages: every datagram arrives, in order,
// and none is counted as an error.
func TestBatchConnFallsBackWhenGSORefused(t *testing.T) {
	sock := listenLoopback(t)
	if !gsoSupported(sock) {
		t.Skip("kernel without UDP_SEGMENT")
	}
	rc, err := sock.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1)
	}); err != nil || serr != nil {
		t.Skipf("SO_NO_CHECK: %v %v", err, serr)
	}
	stats := testSendStats()
	bc := makeBatchConn(sock, true, stats, 1000) // flusher started once all is queued
	const dests, per = 3, 40
	recv := make([]*net.UDPConn, dests)
	for d := range recv {
		recv[d] = listenLoopback(t)
	}
	buf := make([]byte, 2048)
	write := func(from, to int) {
		for seq := from; seq < to; seq++ {
			for d := range dests {
				p := buf[:sizeFor(seq)]
				p[0] = byte(d)
				binary.BigEndian.PutUint32(p[1:], uint32(seq))
				if _, err := bc.WriteTo(p, recv[d].LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	write(0, per/2) // one batch: the first train is refused, the rest of it goes plain
	go bc.flushLoop()
	outs := make([]chan []datagram, dests)
	for d := range dests {
		outs[d] = make(chan []datagram, 1)
		go receive(recv[d], per, outs[d])
	}
	write(per/2, per) // later batches
	for d := range dests {
		got := <-outs[d]
		if len(got) != per {
			t.Fatalf("destination %d got %d datagrams, want %d", d, len(got), per)
		}
		for i, g := range got {
			if want := (datagram{d, i, sizeFor(i)}); g != want {
				t.Fatalf("destination %d datagram %d = %+v, want %+v", d, i, g, want)
			}
		}
	}
	if err := bc.Close(); err != nil { // the flusher has ended: its state is final
		t.Fatal(err)
	}
	if bc.fl.gso {
		t.Error("GSO still on after the kernel refused it")
	}
	if got := testutilValue(stats.errors); got != 0 {
		t.Errorf("errors = %v, want 0", got)
	}
	// The first train (10 packets) went by sendto; every other datagram is a message.
	if got, want := testutilValue(stats.messages), float64(dests*per-10); got != want {
		t.Errorf("messages = %v, want %v", got, want)
	}
}

// TestBatchConnRawSendBothFamilies: the raw sendmmsg (rawSender) sends from an IPv4
// socket and from a dual-stack IPv6 one (what the relay gets for 0.0.0.0 where IPv6
// exists: IPv4 destinations as mapped addresses), GSO trains and single packets, every
// datagram arriving in order.
func TestBatchConnRawSendBothFamilies(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp", "0.0.0.0:0"}} {
		la, err := net.ResolveUDPAddr(tc.network, tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		sock, err := net.ListenUDP(tc.network, la)
		if err != nil {
			t.Fatal(err)
		}
		bc := newBatchConn(sock, gsoSupported(sock), testSendStats(), 0)
		if bc.raw == nil {
			t.Fatalf("%s: no raw sender", tc.network)
		}
		t.Logf("%s %s: AF_INET6 socket %v", tc.network, tc.addr, bc.raw.v6)
		const dests, per = 2, 30
		outs := make([]chan []datagram, dests)
		recv := make([]*net.UDPConn, dests)
		for d := range dests {
			recv[d] = listenLoopback(t)
			outs[d] = make(chan []datagram, 1)
			go receive(recv[d], per, outs[d])
		}
		buf := make([]byte, 2048)
		for seq := range per {
			for d := range dests {
				p := buf[:sizeFor(seq)]
				p[0] = byte(d)
				binary.BigEndian.PutUint32(p[1:], uint32(seq))
				if _, err := bc.WriteTo(p, recv[d].LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
		}
		for d := range dests {
			got := <-outs[d]
			if len(got) != per {
				t.Fatalf("%s: destination %d got %d datagrams, want %d", tc.network, d, len(got), per)
			}
			for i, g := range got {
				if want := (datagram{d, i, sizeFor(i)}); g != want {
					t.Fatalf("%s: destination %d datagram %d = %+v, want %+v", tc.network, d, i, g, want)
				}
			}
		}
		_ = bc.Close()
		if got := testutilValue(bc.stats.errors); got != 0 {
			t.Errorf("%s: %v send errors", tc.network, got)
		}
	}
}

// TestBatchConnRawSendRetriesEINTR: a sendmmsg interrupted by a signal before it sent
// anything (EINTR; the Go runtime's own handlers restart system calls, another one's
// may not) is made again at once: every datagram arrives, in order, none is counted
// as an error, and the socket is not given back to the poller (which would wait for a
// writability edge that a writable socket never gives: the sends would hang).
func TestBatchConnRawSendRetriesEINTR(t *testing.T) {
	for _, gso := range []bool{false, true} {
		sock := listenLoopback(t)
		if gso && !gsoSupported(sock) {
			t.Log("kernel without UDP_SEGMENT")
			continue
		}
		stats := testSendStats()
		bc := makeBatchConn(sock, gso, stats, 1000)
		if bc.raw == nil {
			t.Fatal("no raw sender")
		}
		var calls, interrupted int // the flusher's only
		bc.raw.sys = func(fd uintptr, hdrs []mmsghdr) (int, syscall.Errno) {
			calls++
			if calls%3 != 0 { // two interruptions before each call that goes through
				interrupted++
				return 0, unix.EINTR
			}
			return sendmmsgRaw(fd, hdrs)
		}
		go bc.flushLoop()
		const dests, per = 3, 40
		recv := make([]*net.UDPConn, dests)
		outs := make([]chan []datagram, dests)
		for d := range dests {
			recv[d] = listenLoopback(t)
			outs[d] = make(chan []datagram, 1)
			go receive(recv[d], per, outs[d])
		}
		buf := make([]byte, 2048)
		for seq := range per {
			for d := range dests {
				p := buf[:sizeFor(seq)]
				p[0] = byte(d)
				binary.BigEndian.PutUint32(p[1:], uint32(seq))
				if _, err := bc.WriteTo(p, recv[d].LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
		}
		for d := range dests {
			got := <-outs[d]
			if len(got) != per {
				t.Fatalf("gso=%v: destination %d got %d datagrams, want %d", gso, d, len(got), per)
			}
			for i, g := range got {
				if want := (datagram{d, i, sizeFor(i)}); g != want {
					t.Fatalf("gso=%v: destination %d datagram %d = %+v, want %+v", gso, d, i, g, want)
				}
			}
		}
		if err := bc.Close(); err != nil { // the flusher has ended
			t.Fatal(err)
		}
		if got := testutilValue(stats.errors); got != 0 {
			t.Errorf("gso=%v: errors = %v, want 0", gso, got)
		}
		if interrupted == 0 {
			t.Errorf("gso=%v: no call interrupted, want some", gso)
		}
		t.Logf("gso=%v: %d system calls, %d interrupted", gso, calls, interrupted)
	}
}
