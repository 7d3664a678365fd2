package rtctest

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// The ring keeps a time per (SSRC, sequence number): SSRCs with the same numbers do not
// mix, a slot is reused ringSlots numbers later, and a new SSRC past ringStreams takes
// the least recently used one's place.
func TestArrivalRing(t *testing.T) {
	var r arrivalRing
	r.note(1, 100, 1000)
	r.note(2, 100, 2000)
	for _, c := range []struct {
		ssrc uint32
		seq  uint16
		at   int64
		ok   bool
	}{{1, 100, 1000, true}, {2, 100, 2000, true}, {1, 101, 0, false}, {3, 100, 0, false}} {
		if at, ok := r.lookup(c.ssrc, c.seq); at != c.at || ok != c.ok {
			t.Errorf("lookup(%d, %d) = %d, %v; want %d, %v", c.ssrc, c.seq, at, ok, c.at, c.ok)
		}
	}

	// Sequence numbers wrap; the slot of 100 goes to 100+ringSlots.
	r.note(1, 65535, 3000)
	r.note(1, 0, 3001)
	r.note(1, 100+ringSlots, 4000)
	if _, ok := r.lookup(1, 100); ok {
		t.Error("seq 100 still found after its slot was reused")
	}
	for seq, want := range map[uint16]int64{65535: 3000, 0: 3001, 100 + ringSlots: 4000} {
		if at, ok := r.lookup(1, seq); !ok || at != want {
			t.Errorf("lookup(1, %d) = %d, %v; want %d", seq, at, ok, want)
		}
	}

	// SSRCs 1 and 2 are in use, 3 and 4 take the free places, 5 the place of 2 (1 was
	// used last).
	r.note(3, 7, 5000)
	r.note(4, 7, 6000)
	r.note(1, 8, 7000)
	r.note(5, 7, 8000)
	if _, ok := r.lookup(2, 100); ok {
		t.Error("SSRC 2, the least recently used, still kept after a fifth SSRC came")
	}
	for ssrc, want := range map[uint32]int64{1: 7000, 3: 5000, 4: 6000, 5: 8000} {
		seq := uint16(7)
		if ssrc == 1 {
			seq = 8
		}
		if at, ok := r.lookup(ssrc, seq); !ok || at != want {
			t.Errorf("lookup(%d, %d) = %d, %v; want %d", ssrc, seq, at, ok, want)
		}
	}
	// The new SSRC's place starts empty: 2's old numbers are not 5's.
	if _, ok := r.lookup(5, 100); ok {
		t.Error("SSRC 5 inherited SSRC 2's times")
	}
}

// Only RTP (and SRTP) packets are noted: not RTCP, STUN, DTLS or a runt.
func TestRTPKey(t *testing.T) {
	rtpPkt := func(b0, b1 byte) []byte {
		b := make([]byte, 20)
		b[0], b[1] = b0, b1
		binary.BigEndian.PutUint16(b[2:], 4242)
		binary.BigEndian.PutUint32(b[8:], 0xdeadbeef)
		return b
	}
	for _, c := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"VP8, PT 96", rtpPkt(0x80, 96), true},
		{"with marker", rtpPkt(0x90, 0x80|96), true},
		{"Opus, PT 111", rtpPkt(0x80, 111), true},
		{"RTCP SR", rtpPkt(0x80, 200), false},
		{"RTCP RR with count", rtpPkt(0x81, 201), false},
		{"RTCP feedback", rtpPkt(0x81, 206), false},
		{"STUN", rtpPkt(0x00, 0x01), false},
		{"DTLS", rtpPkt(22, 0xfe), false},
		{"runt", rtpPkt(0x80, 96)[:11], false},
	} {
		ssrc, seq, ok := rtpKey(c.b)
		if ok != c.ok || (ok && (ssrc != 0xdeadbeef || seq != 4242)) {
			t.Errorf("%s: rtpKey = %#x, %d, %v; want ok=%v (0xdeadbeef, 4242)", c.name, ssrc, seq, ok, c.ok)
		}
	}
}

// Sockets are found by local address however the IPv4 address is spelled, and
// forgotten on close (only the one registered there).
func TestSocketTimesRegistry(t *testing.T) {
	s := NewSocketTimes()
	a4 := netip.MustParseAddrPort("127.0.0.1:5000")
	mapped := netip.MustParseAddrPort("[::ffff:127.0.0.1]:5000")
	r := s.open(mapped)
	if got := s.socket(a4); got != r {
		t.Fatalf("socket(%v) = %p, want the ring opened at %v (%p)", a4, got, mapped, r)
	}
	s.close(a4, &arrivalRing{}) // another socket's ring: not this one
	if s.socket(a4) != r {
		t.Fatal("close with another ring forgot the socket")
	}
	s.close(a4, r)
	if s.socket(a4) != nil || s.Sockets() != 0 {
		t.Fatalf("after close: socket %p, %d registered; want none", s.socket(a4), s.Sockets())
	}
	var none *SocketTimes
	if none.socket(a4) != nil {
		t.Fatal("a nil SocketTimes found a socket")
	}
}
