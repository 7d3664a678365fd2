package stream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Retransmission toward viewers and their RTCP sender reports, done by the relay's own
// writer instead of an interceptor on every viewer's write chain.
//
// The publisher's packets are kept once per stream (history, indexed by the
// publisher's sequence number), not copied into a history per viewer: each viewer's
// track only logs the few points where its sequence-number and timestamp offsets
// changed (segments), and a NACK for one of its sequence numbers is mapped back to the
// publisher's packet through them. Per packet and viewer that is a few stores on a
// cache line the writer has just touched, where the per-viewer history (an interceptor
// with its own lock and a 100-byte slot per packet, cold by the time it came round
// again) cost about 5 % of the relay's CPU at 200 viewers. Resends run on the viewer's
// RTCP reader goroutine, capped per NACK and held off per packet: under loss,
// retransmissions must not snowball into more load and more loss.

// Resend limits and the sender reports' interval.
const (
	maxResendPerNACK = 48
	resendHoldoff    = 40 * time.Millisecond
	// reportInterval is the time between sender reports, as pion's.
	reportInterval = time.Second
	// maxSegments is how many offset changes a viewer's track remembers for NACKs.
	maxSegments = 8
	// resendMemory is how many recent resends a track remembers for the hold-off.
	resendMemory = 64
	// maxSegmentSpan is the most output packets a segment is remembered for.
	maxSegmentSpan = 1 << 14
)

// history keeps a publisher track's newest packets by sequence number, for resends.
// The track's reader goroutine stores; viewers' RTCP readers load.
type history struct {
	slots []atomic.Pointer[packet] // index seq % len; len a power of two
}

func newHistory(size uint16) *history {
	return &history{slots: make([]atomic.Pointer[packet], size)}
}

func (h *history) put(p *packet) {
	h.slots[p.hdr.SequenceNumber&uint16(len(h.slots)-1)].Store(p)
}

// get returns the packet with the publisher's sequence number seq of the source
// generation gen, nil when it is no longer (or never was) kept.
func (h *history) get(seq uint16, gen uint64) *packet {
	p := h.slots[seq&uint16(len(h.slots)-1)].Load()
	if p == nil || p.hdr.SequenceNumber != seq || p.gen != gen {
		return nil
	}
	return p
}

// segment is a run of a viewer's output in which its sequence numbers and timestamps
// are the publisher's plus fixed offsets.
type segment struct {
	outStart uint16 // first output sequence number of the run
	seqOff   uint16
	tsOff    uint32
	gen      uint64
	ssrc     uint32
	pt       uint8
}

func (s segment) differs(o segment) bool {
	return s.seqOff != o.seqOff || s.tsOff != o.tsOff || s.gen != o.gen || s.ssrc != o.ssrc || s.pt != o.pt
}

// sendLog is what a viewer's track shares between its writer (which appends), its RTCP
// reader (NACKs) and the relay's report loop. It sits next to the writer's rewrite
// state, so the writer's lock and stores hit a line it has just used.
type sendLog struct {
	mu      sync.Mutex
	segs    [maxSegments]segment // guarded by mu; ring, segs[(nsegs-1) % maxSegments] newest
	nsegs   int                  // guarded by mu
	lastOut uint16               // guarded by mu: newest output sequence number
	// For the sender reports; guarded by mu.
	packets, octets uint32
	lastRTP         uint32               // RTP time of the newest packet
	lastAt          time.Time            // when it was written
	resent          [resendMemory]resend // guarded by mu; index seq % resendMemory
}

type resend struct {
	seq uint16
	at  time.Time
}

// logWrite records a packet the writer is about to send: its output sequence number
// and timestamp (newest: it advanced the output) and, with newSeg, that it starts a
// new segment (seg's offsets).
func (l *sendLog) logWrite(newSeg bool, seg segment, seq uint16, ts uint32, newest bool, size int, now time.Time) {
	l.mu.Lock()
	if newSeg || l.nsegs == 0 {
		seg.outStart = seq
		l.segs[l.nsegs%maxSegments] = seg
		l.nsegs++
		if l.nsegs >= 2*maxSegments {
			l.nsegs -= maxSegments // keeps the ring's order, never wraps the int
		}
	}
	if newest || l.packets == 0 {
		l.lastOut, l.lastRTP, l.lastAt = seq, ts, now
		// A long run keeps only its newest part: distances stay well inside int16
		// (NACKs for packets that old find nothing in the history anyway).
		if cur := &l.segs[(l.nsegs-1)%maxSegments]; seq-cur.outStart > maxSegmentSpan {
			cur.outStart = seq - maxSegmentSpan
		}
	}
	l.packets++
	l.octets += uint32(size)
	l.mu.Unlock()
}

// segmentLocked returns the segment that output sequence number seq was written in;
// false if seq is newer than anything written or older than the segments remembered.
// Nothing more than maxSegmentSpan before the newest is: a long run forgets its start
// (logWrite), and the run before it would map such a number to another packet (an
// SRTP index used again for other bytes). No history holds a packet that old anyway.
func (l *sendLog) segmentLocked(seq uint16) (segment, bool) {
	if l.nsegs == 0 || int16(seq-l.lastOut) > 0 || l.lastOut-seq > maxSegmentSpan {
		return segment{}, false
	}
	back := int16(l.lastOut - seq) // how far before the newest
	n := min(l.nsegs, maxSegments)
	prev := int16(-1)
	for i := 1; i <= n; i++ {
		s := l.segs[(l.nsegs-i)%maxSegments]
		d := int16(l.lastOut - s.outStart) // how far before the newest this run began
		if d < prev {
			break // further back than int16 reaches: not remembered
		}
		if d >= back {
			return s, true
		}
		prev = d
	}
	return segment{}, false
}

// report is the track's sender report at now, or nil before its first packet.
func (l *sendLog) report(ssrc uint32, clock uint32, now time.Time) *rtcp.SenderReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.packets == 0 {
		return nil
	}
	return &rtcp.SenderReport{
		SSRC:        ssrc,
		NTPTime:     toNTP(now),
		RTPTime:     l.lastRTP + uint32(now.Sub(l.lastAt).Seconds()*float64(clock)),
		PacketCount: l.packets,
		OctetCount:  l.octets,
	}
}

// resendPackets lists the packets a NACK asks for that can be resent now: written in a
// remembered segment, still in the stream's history, not resent within the hold-off;
// at most maxResendPerNACK. Their headers are rebuilt as they were first written.
func (l *sendLog) resendPackets(nack *rtcp.TransportLayerNack, hist *history, now time.Time, out []resentPacket) []resentPacket {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, pair := range nack.Nacks {
		if len(out) >= maxResendPerNACK {
			break
		}
		pair.Range(func(seq uint16) bool {
			seg, ok := l.segmentLocked(seq)
			if !ok {
				return true
			}
			p := hist.get(seq-seg.seqOff, seg.gen)
			if p == nil {
				return true
			}
			r := &l.resent[seq%resendMemory]
			if r.seq == seq && now.Sub(r.at) < resendHoldoff {
				return true
			}
			r.seq, r.at = seq, now
			out = append(out, resentPacket{hdr: rtp.Header{
				Version:        2,
				Marker:         p.hdr.Marker,
				PayloadType:    seg.pt,
				SequenceNumber: seq,
				Timestamp:      p.hdr.Timestamp + seg.tsOff,
				SSRC:           seg.ssrc,
				CSRC:           p.hdr.CSRC,
			}, payload: p.payload})
			return len(out) < maxResendPerNACK
		})
	}
	return out
}

type resentPacket struct {
	hdr     rtp.Header
	payload []byte
}

// toNTP converts t to a 64-bit NTP timestamp (seconds since 1900, 32.32 fixed point).
func toNTP(t time.Time) uint64 {
	const unixToNTP = 2208988800
	ns := uint64(t.UnixNano())
	sec := ns/1e9 + unixToNTP
	frac := (ns % 1e9) << 32 / 1e9
	return sec<<32 | frac
}

// resend answers a NACK for this track from the stream's history, on the caller's
// (the RTCP reader's) goroutine.
func (t *viewerTrack) resend(nack *rtcp.TransportLayerNack) {
	b := t.binding.Load()
	if b == nil || !b.nack || nack.MediaSSRC != b.ssrc {
		return
	}
	hist := t.v.room.hist[t.kind]
	if hist == nil {
		return
	}
	var buf [maxResendPerNACK]resentPacket
	todo := t.log.resendPackets(nack, hist, time.Now(), buf[:0])
	for i := range todo {
		if err := t.v.writeRTP(b, &todo[i].hdr, todo[i].payload, nil); err != nil {
			return
		}
		t.v.room.relay.metrics.resent.Inc()
	}
}

// sendReports writes the viewer's sender reports, one RTCP packet per track (a
// receiver hands a compound packet to every SSRC it names).
func (v *viewer) sendReports(now time.Time) {
	if v.closed.Load() || !v.connected.Load() {
		return
	}
	for _, t := range v.tracks {
		if t == nil {
			continue
		}
		b := t.binding.Load()
		if b == nil {
			continue
		}
		if sr := t.log.report(b.ssrc, b.clock, now); sr != nil {
			_ = v.pc.WriteRTCP([]rtcp.Packet{sr})
		}
	}
}

// reportLoop sends every viewer's sender reports each reportInterval until Close.
func (r *Relay) reportLoop() {
	defer close(r.reportsDone)
	t := time.NewTicker(reportInterval)
	defer t.Stop()
	var rooms []*room
	for {
		select {
		case <-r.stopReports:
			return
		case now := <-t.C:
			r.mu.Lock()
			rooms = rooms[:0]
			for _, rm := range r.rooms {
				rooms = append(rooms, rm)
			}
			r.mu.Unlock()
			for _, rm := range rooms {
				for _, v := range *rm.viewerList.Load() {
					v.sendReports(now)
					v.checkReach(now)
				}
			}
			clear(rooms)
		}
	}
}
