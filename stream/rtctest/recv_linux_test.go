//go:build linux

package rtctest

import (
	"encoding/binary"
	"net"
	"syscall"
	"testing"
	"time"
)

// A socket with SocketTimes keeps the kernel's receive time of each RTP datagram: the
// time it arrived, not the time it was read (the test reads 100 ms later, once the
// kernel stamps on arrival). A GSO train
// read whole through UDP_GRO gives its packets one time; RTCP is not kept. Closing the
// socket forgets it.
func TestRecvConnKeepsKernelArrival(t *testing.T) {
	for _, gro := range []bool{false, true} {
		times := NewSocketTimes()
		n, err := newRecvNet(gro, times)
		if err != nil {
			t.Fatal(err)
		}
		pc, err := n.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		rc, ok := pc.(*recvConn)
		if !ok {
			t.Fatalf("gro %v: socket %T, want *recvConn (SO_TIMESTAMPNS refused?)", gro, pc)
		}
		local := rc.LocalAddr().(*net.UDPAddr)
		ring := times.socket(local.AddrPort())
		if ring == nil {
			t.Fatalf("gro %v: socket at %v not registered", gro, local)
		}
		snd, err := net.DialUDP("udp4", nil, local)
		if err != nil {
			t.Fatal(err)
		}
		pkt := func(ssrc uint32, seq uint16, pt byte) []byte {
			b := make([]byte, 100)
			b[0], b[1] = 0x80, pt
			binary.BigEndian.PutUint16(b[2:], seq)
			binary.BigEndian.PutUint32(b[8:], ssrc)
			return b
		}
		waitArrivalStamps(t, snd, rc, ring, pkt(1, 1, 96))
		before := time.Now().UnixNano()
		if _, err := snd.Write(pkt(7, 1, 96)); err != nil {
			t.Fatal(err)
		}
		if _, err := snd.Write(pkt(7, 2, 200)); err != nil { // RTCP
			t.Fatal(err)
		}
		want := 2 // datagrams to read
		if gro {  // one write of three 100-byte segments (UDP_SEGMENT)
			train := append(append(pkt(9, 10, 96), pkt(9, 11, 96)...), pkt(9, 12, 96)...)
			if _, _, err := snd.WriteMsgUDP(train, udpSegmentCmsg(100), nil); err != nil {
				t.Skipf("no UDP GSO send here: %v", err)
			}
			want = 5
		}
		sentBy := time.Now().UnixNano()
		time.Sleep(100 * time.Millisecond)
		buf := make([]byte, 1500)
		_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
		for range want {
			if _, _, err := rc.ReadFrom(buf); err != nil {
				t.Fatal(err)
			}
		}
		readAt := time.Now().UnixNano()
		at, ok := ring.lookup(7, 1)
		if !ok {
			t.Fatalf("gro %v: no arrival kept for the RTP packet", gro)
		}
		if at < before || at > sentBy+int64(50*time.Millisecond) || readAt-at < int64(90*time.Millisecond) {
			t.Errorf("gro %v: kept %v after the send began, sends done at %v, read at %v: want the arrival (during the send), not the read",
				gro, time.Duration(at-before), time.Duration(sentBy-before), time.Duration(readAt-before))
		}
		if _, ok := ring.lookup(7, 2); ok {
			t.Errorf("gro %v: an RTCP packet's arrival was kept as RTP", gro)
		}
		if gro {
			t10, ok10 := ring.lookup(9, 10)
			t12, ok12 := ring.lookup(9, 12)
			if !ok10 || !ok12 || t10 != t12 || t10 < before || t10 > sentBy+int64(50*time.Millisecond) {
				t.Errorf("train: arrivals %d (%v), %d (%v); want one time within the sends", t10, ok10, t12, ok12)
			}
			if _, ok := ring.lookup(9, 11); !ok {
				t.Error("train: the middle packet's arrival not kept")
			}
		}
		snd.Close()
		if err := rc.Close(); err != nil {
			t.Fatal(err)
		}
		if times.Sockets() != 0 {
			t.Errorf("gro %v: %d sockets registered after close, want 0", gro, times.Sockets())
		}
	}
}

// waitArrivalStamps waits until the kernel stamps datagrams when they arrive. It turns
// that on a moment after the first socket asks (a static key flipped by deferred work,
// net_enable_timestamp); until then a datagram is stamped when it is read. probe is an
// RTP packet (SSRC 1) sent until its time is kept on arrival.
func waitArrivalStamps(t *testing.T, snd *net.UDPConn, rc *recvConn, ring *arrivalRing, probe []byte) {
	t.Helper()
	buf := make([]byte, 1500)
	for try := range 100 {
		binary.BigEndian.PutUint16(probe[2:], uint16(try))
		sent := time.Now().UnixNano()
		if _, err := snd.Write(probe); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := rc.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
		if at, ok := ring.lookup(1, uint16(try)); ok && at-sent < int64(10*time.Millisecond) {
			return
		}
	}
	t.Fatal("the kernel still stamps datagrams when read, not when they arrive, after 100 probes")
}

// udpSegmentCmsg is a UDP_SEGMENT control message: send the buffer as segments of size.
func udpSegmentCmsg(size uint16) []byte {
	const udpSegment = 103 // UDP_SEGMENT
	b := make([]byte, syscall.CmsgSpace(2))
	ne := binary.NativeEndian
	if syscall.SizeofCmsghdr == 16 { // struct cmsghdr: size_t len, int level, int type
		ne.PutUint64(b, uint64(syscall.CmsgLen(2)))
		ne.PutUint32(b[8:], solUDP)
		ne.PutUint32(b[12:], udpSegment)
	} else {
		ne.PutUint32(b, uint32(syscall.CmsgLen(2)))
		ne.PutUint32(b[4:], solUDP)
		ne.PutUint32(b[8:], udpSegment)
	}
	ne.PutUint16(b[syscall.CmsgLen(0):], size)
	return b
}
