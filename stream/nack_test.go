package stream

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/transport/v2"
	"github.com/pion/transport/v2/stdnet"

	"github.com/livecart/livecart/stream/rtctest"
)

// writeTo logs a packet of the publisher's as the writer would: through seg's offsets.
func writeTo(l *sendLog, cur *segment, seg segment, src *packet, now time.Time) uint16 {
	newSeg := *cur != seg
	*cur = seg
	seq := src.hdr.SequenceNumber + seg.seqOff
	l.logWrite(newSeg, seg, seq, src.hdr.Timestamp+seg.tsOff, true, len(src.payload), now)
	return seq
}

func nackFor(seqs ...uint16) *rtcp.TransportLayerNack {
	n := &rtcp.TransportLayerNack{MediaSSRC: 7}
	for _, s := range seqs {
		n.Nacks = append(n.Nacks, rtcp.NackPair{PacketID: s})
	}
	return n
}

func seqsOf(ps []resentPacket) []uint16 {
	var out []uint16
	for _, p := range ps {
		out = append(out, p.hdr.SequenceNumber)
	}
	return out
}

// TestSendLogResends: a NACK for a viewer's sequence numbers finds the publisher's
// packets in the shared history through the viewer's offsets, in the run (segment)
// each was written in, with the header rebuilt as written; packets no longer kept, not
// yet written, or resent within the hold-off are not resent; at most
// maxResendPerNACK per NACK.
func TestSendLogResends(t *testing.T) {
	hist := newHistory(64)
	var l sendLog
	var cur segment
	now := time.Now()
	a := segment{seqOff: 1000, tsOff: 5, gen: 1, ssrc: 7, pt: 96}
	b := segment{seqOff: 2000, tsOff: 900, gen: 2, ssrc: 7, pt: 96}
	src := map[uint16]*packet{}
	for seq := uint16(100); seq < 300; seq++ { // source 100..299 as 1100..1299
		p := &packet{hdr: rtp.Header{SequenceNumber: seq, Timestamp: uint32(seq) * 10, Marker: seq%3 == 0},
			payload: []byte{byte(seq)}, gen: 1}
		hist.put(p)
		src[seq] = p
		writeTo(&l, &cur, a, p, now)
	}
	// A new source (gen 2) restarts at 0: its first packet is written as 1300.
	for seq := uint16(0); seq < 40; seq++ {
		b.seqOff = 1300
		p := &packet{hdr: rtp.Header{SequenceNumber: seq, Timestamp: 7 * uint32(seq)}, payload: []byte{byte(seq)}, gen: 2}
		hist.put(p)
		writeTo(&l, &cur, b, p, now)
	}
	// 64 slots: gen 2's 0..39 overwrote slots 0..39, so of gen 1 only 236..255 (slots
	// 44..63) and 296..299 (slots 40..43) are left; 1290 is source 290, whose slot
	// now holds gen 2's 34. 1340 and 2000 were not written yet.
	got := l.resendPackets(nackFor(1296, 1297, 1290, 1310, 1339, 1340, 2000), hist, now, nil)
	if s := seqsOf(got); len(s) != 4 || s[0] != 1296 || s[1] != 1297 || s[2] != 1310 || s[3] != 1339 {
		t.Fatalf("resent %v, want [1296 1297 1310 1339]", s)
	}
	h := got[0].hdr
	if want := src[296]; h.Timestamp != want.hdr.Timestamp+5 || h.SSRC != 7 || h.PayloadType != 96 ||
		h.Marker != want.hdr.Marker || got[0].payload[0] != byte(296%256) {
		t.Errorf("resent 1296 as %+v %v, want source 296 with timestamp +5", h, got[0].payload)
	}
	if h := got[2].hdr; h.Timestamp != 7*10+900 || got[2].payload[0] != 10 {
		t.Errorf("resent 1310 as %+v, want gen 2's source 10 with timestamp +900", h)
	}
	if s := seqsOf(l.resendPackets(nackFor(1296), hist, now.Add(10*time.Millisecond), nil)); len(s) != 0 {
		t.Errorf("NACK again at once: resent %v, want nothing (hold-off)", s)
	}
	if s := seqsOf(l.resendPackets(nackFor(1296), hist, now.Add(resendHoldoff), nil)); len(s) != 1 {
		t.Errorf("NACK again after the hold-off: resent %v, want [1296]", s)
	}
	// 1236..1354 asked for: 64 of them are kept (gen 1's 236..255, 296..299, gen 2's
	// 0..39), more than one NACK may resend.
	var many []rtcp.NackPair
	for id := uint16(1236); id < 1355; id += 17 {
		many = append(many, rtcp.NackPair{PacketID: id, LostPackets: 0xffff})
	}
	if got := l.resendPackets(&rtcp.TransportLayerNack{Nacks: many}, hist, now.Add(time.Second), nil); len(got) != maxResendPerNACK {
		t.Errorf("resent %d packets for one NACK, want %d (the cap)", len(got), maxResendPerNACK)
	}
}

// TestSendLogForgetsOldSegments: only the newest maxSegments runs are remembered; a
// NACK for a packet written before them resends nothing, even when the history still
// has a packet that the remembered offsets would map it to.
func TestSendLogForgetsOldSegments(t *testing.T) {
	hist := newHistory(256)
	var l sendLog
	var cur segment
	now := time.Now()
	var first uint16
	for i := 0; i < maxSegments+3; i++ {
		// Every run rewrites the same 10 source packets with a new offset.
		seg := segment{seqOff: uint16(10 * i), gen: 1, ssrc: 7, pt: 96}
		for seq := uint16(0); seq < 10; seq++ {
			p := &packet{hdr: rtp.Header{SequenceNumber: seq}, payload: []byte{1}, gen: 1}
			hist.put(p)
			out := writeTo(&l, &cur, seg, p, now)
			if i == 0 && seq == 5 {
				first = out
			}
		}
	}
	if s := seqsOf(l.resendPackets(nackFor(first), hist, now, nil)); len(s) != 0 {
		t.Errorf("resent %v for a packet of a forgotten run, want nothing", s)
	}
	last := uint16(10*(maxSegments+2) + 5)
	if s := seqsOf(l.resendPackets(nackFor(last), hist, now, nil)); len(s) != 1 || s[0] != last {
		t.Errorf("resent %v, want [%d]", s, last)
	}
	// A run longer than maxSegmentSpan still answers for its newest packets.
	seg := segment{seqOff: 5000, gen: 1, ssrc: 7, pt: 96}
	var out uint16
	for i := 0; i < 3*maxSegmentSpan; i++ {
		p := &packet{hdr: rtp.Header{SequenceNumber: uint16(i)}, payload: []byte{1}, gen: 1}
		hist.put(p)
		out = writeTo(&l, &cur, seg, p, now)
	}
	if s := seqsOf(l.resendPackets(nackFor(out-3), hist, now, nil)); len(s) != 1 || s[0] != out-3 {
		t.Errorf("long run: resent %v, want [%d]", s, out-3)
	}
}

// TestSenderReportCounts: the log counts written packets for the sender reports and
// extrapolates the RTP time from the newest packet (a late one is counted but is not
// the newest).
func TestSenderReportCounts(t *testing.T) {
	var l sendLog
	if l.report(9, 48000, time.Now()) != nil {
		t.Fatal("a report before any packet")
	}
	now := time.Now()
	seg := segment{ssrc: 9, gen: 1}
	for seq := uint16(65530); seq != 10; seq++ { // across the wrap
		l.logWrite(seq == 65530, seg, seq, 960*uint32(seq), true, 100, now)
	}
	l.logWrite(false, seg, 5, 1, false, 100, now.Add(time.Millisecond)) // late: not the newest
	at := now.Add(500 * time.Millisecond)
	sr := l.report(9, 48000, at)
	if sr.SSRC != 9 || sr.PacketCount != 17 || sr.OctetCount != 1700 {
		t.Errorf("report SSRC %d packets %d octets %d, want 9, 17, 1700", sr.SSRC, sr.PacketCount, sr.OctetCount)
	}
	if want := 960*uint32(9) + 24000; sr.RTPTime != want {
		t.Errorf("RTP time %d, want %d (newest packet + 0.5 s at 48 kHz)", sr.RTPTime, want)
	}
	if got := time.Unix(int64(sr.NTPTime>>32)-2208988800, int64((sr.NTPTime&0xffffffff)*1e9>>32)); got.Sub(at).Abs() > time.Microsecond {
		t.Errorf("NTP time %v, want %v", got, at)
	}
}

// lossyNet gives the viewer sockets that drop some of the relay's video RTP packets
// (every dropEvery-th, up to maxDrops) before pion sees them, and notes which of the
// dropped sequence numbers arrive again later.
type lossyNet struct {
	*stdnet.Net
	dropEvery, maxDrops int

	mu      sync.Mutex
	n       int
	dropped map[uint16]bool // seq → arrived again
}

func (n *lossyNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &lossyConn{UDPConn: c, net: n}, nil
}

func (n *lossyNet) ListenPacket(network, address string) (net.PacketConn, error) {
	a, err := net.ResolveUDPAddr(network, address)
	if err != nil {
		return nil, err
	}
	return n.ListenUDP(network, a)
}

// counts returns how many packets were dropped and how many of them came again.
func (n *lossyNet) counts() (dropped, again int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ok := range n.dropped {
		if ok {
			again++
		}
	}
	return len(n.dropped), again
}

type lossyConn struct {
	*net.UDPConn
	net *lossyNet
}

func (c *lossyConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		k, from, err := c.UDPConn.ReadFrom(p)
		if err != nil || !c.net.drop(p[:k]) {
			return k, from, err
		}
	}
}

// drop decides on one datagram: RTP (not RTCP: RFC 5761) with the VP8 payload type.
func (n *lossyNet) drop(b []byte) bool {
	if len(b) < 12 || b[0]>>6 != 2 || b[1]&0x7f != 96 {
		return false
	}
	seq := binary.BigEndian.Uint16(b[2:])
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.dropped[seq]; ok {
		n.dropped[seq] = true
		return false
	}
	n.n++
	if n.n%n.dropEvery != 0 || len(n.dropped) >= n.maxDrops {
		return false
	}
	n.dropped[seq] = false
	return true
}

// TestViewerNACKIsAnswered: a real pion viewer whose network loses video packets NACKs
// them (pion's generator) and the relay resends each from the stream's shared history:
// the dropped sequence numbers arrive again, and the viewer ends with no gap.
func TestViewerNACKIsAnswered(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	sn, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	ln := &lossyNet{Net: sn, dropEvery: 7, maxDrops: 12, dropped: map[uint16]bool{}}
	a, err := rtctest.NewAPIWithOptions(rtctest.APIOptions{Net: ln})
	if err != nil {
		t.Fatal(err)
	}
	startPublisher(t, r, "nack")
	v, _ := startViewerWith(t, a, r, "nack")
	waitFor(t, slow(15*time.Second), "12 drops, each resent", func() bool {
		d, again := ln.counts()
		return d == ln.maxDrops && again == d
	})
	waitFor(t, slow(5*time.Second), "no gap in the viewer's video", func() bool {
		s := v.Stats().Video
		return s.Packets >= s.Expected
	})
	if got := testutilValue(r.metrics.resent); got < float64(ln.maxDrops) {
		t.Errorf("resent counter %v, want ≥ %d", got, ln.maxDrops)
	}
}

// TestSendLogNeverResendsAnotherPacketOnANumber: a NACK for an output sequence number
// written in a long run (longer than maxSegmentSpan, its start forgotten) is never
// answered through the run before it: the earlier run's offsets map the number to
// another packet of the same source, which would be encrypted on an SRTP index (GCM
// nonce) already used for the packet written there. Here the earlier run is source
// 0..99 as 0..99, then a gap of ~47,000 packets closed up (dc05cd3): source 47537.. as
// 100..20099. Output 2000 carried source 49437 (long gone from the history); the first
// run's offsets map it to source 2000, the newest packet (after the wrap). It failed
// before: 2000 was resent with source 2000's payload.
func TestSendLogNeverResendsAnotherPacketOnANumber(t *testing.T) {
	hist := newHistory(256)
	var l sendLog
	var cur segment
	now := time.Now()
	written := map[uint16]uint16{} // output sequence number → source's
	put := func(seg segment, src uint16) {
		p := &packet{hdr: rtp.Header{SequenceNumber: src}, payload: binary.BigEndian.AppendUint16(nil, src), gen: 1}
		hist.put(p)
		written[writeTo(&l, &cur, seg, p, now)] = src
	}
	a := segment{gen: 1, ssrc: 7, pt: 96}
	for src := uint16(0); src < 100; src++ {
		put(a, src)
	}
	jump := uint16(47537)
	b := segment{seqOff: 100 - jump, gen: 1, ssrc: 7, pt: 96} // closed up: jump is written as 100
	for i := 0; i < 20000; i++ {
		put(b, jump+uint16(i))
	}
	for _, seq := range []uint16{2000, 2001, 1990, 3000, 20099 - maxSegmentSpan - 1} {
		for _, r := range l.resendPackets(nackFor(seq), hist, now, nil) {
			if src := binary.BigEndian.Uint16(r.payload); src != written[r.hdr.SequenceNumber] {
				t.Errorf("NACK %d: resent source %d on output %d, where source %d was written",
					seq, src, r.hdr.SequenceNumber, written[r.hdr.SequenceNumber])
			}
		}
	}
	// The newest packets are still resent.
	if s := seqsOf(l.resendPackets(nackFor(20097), hist, now, nil)); len(s) != 1 || s[0] != 20097 {
		t.Errorf("resent %v, want [20097]", s)
	}
}
