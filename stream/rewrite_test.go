package stream

import (
	"testing"
	"time"

	"github.com/pion/rtp"
)

// TestRewriteNeverReusesASequenceNumber: a viewer's output sequence number is the SRTP
// packet index (with the rollover counter), and the keystream (AES-CM) or nonce (GCM)
// is derived from it: two packets with different payloads under one index give away
// the XOR of their plaintexts, and under GCM the authentication key. After a rebase
// (publisher reconnect, unmute, a relay-made gap) the new run continues the output at
// the last number + 1; a late packet of the new source from before the one that
// rebased (a publisher's retransmission, reordering) must not be mapped back onto
// numbers the earlier run already used.
func TestRewriteNeverReusesASequenceNumber(t *testing.T) {
	codec := &codecInfo{mime: "video/vp8", clock: 90000}
	pk := func(seq uint16, gen uint64) entry {
		return entry{p: &packet{hdr: rtp.Header{SequenceNumber: seq, Timestamp: uint32(seq) * 3000},
			payload: []byte{byte(seq)}, codec: codec, gen: gen}}
	}
	var vt viewerTrack
	written := map[uint16]*packet{}
	now := time.Now()
	send := func(e entry) {
		now = now.Add(time.Millisecond)
		seq, _, _, ok := vt.rewrite(e, now)
		if !ok {
			return
		}
		if prev := written[seq]; prev != nil && prev != e.p {
			t.Errorf("output seq %d written for source %d (gen %d) and again for source %d (gen %d)",
				seq, prev.hdr.SequenceNumber, prev.gen, e.p.hdr.SequenceNumber, e.p.gen)
		}
		written[seq] = e.p
	}
	for seq := uint16(100); seq <= 110; seq++ { // first publisher
		send(pk(seq, 1))
	}
	for seq := uint16(5000); seq <= 5005; seq++ { // reconnect: a new source
		send(pk(seq, 2))
	}
	send(pk(4998, 2)) // late packets of the new source, from before its first one
	send(pk(4999, 2))
	e := pk(9000, 2) // a relay-made gap (a stale viewer skipped to a keyframe)
	e.rebase = true
	send(e)
	send(pk(9001, 2))
	send(pk(8999, 2)) // late, before the keyframe
	send(pk(5003, 2)) // a duplicate from far back
	send(pk(9002, 2))
	// Within a run, late packets fill the numbers they were meant for.
	send(pk(9004, 2))
	send(pk(9003, 2))
	if len(written) != 11+6+5 {
		t.Errorf("%d output numbers written, want %d", len(written), 11+6+5)
	}
}

// TestRewriteLongRun: a run longer than half the sequence space keeps writing, and a
// late packet inside it still fills its number.
func TestRewriteLongRun(t *testing.T) {
	codec := &codecInfo{mime: "audio/opus", clock: 48000}
	var vt viewerTrack
	now := time.Now()
	for i := 0; i < 3*65536; i++ {
		seq := uint16(i)
		if i%1000 == 999 {
			seq-- // reordered: 998 after 999 is written once 999 is
		} else if i%1000 == 998 {
			seq++
		}
		e := entry{p: &packet{hdr: rtp.Header{SequenceNumber: seq}, codec: codec, gen: 1}}
		if out, _, _, ok := vt.rewrite(e, now); !ok || out != seq {
			t.Fatalf("packet %d (seq %d): output %d ok=%v, want %d written", i, seq, out, ok, seq)
		}
	}
}
