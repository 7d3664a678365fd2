package stream

import (
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v3"
)

// A viewer's liveness from its receiver reports. ICE cannot tell that the relay's
// packets no longer reach a viewer while the viewer's still reach the relay (a NAT
// mapping that died one way, a tab whose browser keeps sending): pion counts every
// packet received from the remote end as a sign of life, so the relay kept such a
// viewer, and wrote to it, until the viewer's own ICE gave up and it fell silent
// (~32 s with pion's defaults). A viewer's receiver reports name the newest sequence
// number it received on each of the relay's SSRCs; when none of its tracks has
// advanced for ViewerReportTimeout while a packet written that long ago (on audio,
// audioReportFactor times that) is still not reported, on reachTicks report-loop ticks
// in a row (a stall of the relay itself is not held against the viewer: its reports
// wait in the socket meanwhile), the relay closes it. A viewer that never sent a report about a track (a client without
// receiver reports) is left to ICE.

// defaultViewerReportTimeout: libwebrtc reports video every ~1 s, pion every second;
// several seconds of margin over that (audio waits longer: audioReportFactor).
const defaultViewerReportTimeout = 10 * time.Second

// reachTicks is how many report-loop ticks in a row must find a viewer overdue.
const reachTicks = 3

// audioReportFactor: an audio track waits this many timeouts. libwebrtc reports on
// audio alone only every 2.5 to 7.5 s, so a viewer that receives only audio (an
// audio-only stream, or its video muted by the host or a moderator) can go 15 s
// without a report after one report lost on the way; video reports come every second.
const audioReportFactor = 3

// reach is what a viewer reported receiving on one track. Sequence numbers are
// compared by their distance back from the newest one written (lastOut): a report
// from before the viewer got anything (pion's says 0) is far back, or ahead of
// anything written (ignored), and the first real report replaces it.
type reach struct {
	mu       sync.Mutex
	armed    bool      // guarded by mu: the viewer has reported on this track
	reported uint16    // guarded by mu: the newest sequence number it reports received
	pend     bool      // guarded by mu: pendSeq, written at pendAt, is not reported yet
	pendSeq  uint16    // guarded by mu
	pendAt   time.Time // guarded by mu
}

// newest is the track's newest output sequence number, when it was written, and
// whether anything was.
func (l *sendLog) newest() (uint16, time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastOut, l.lastAt, l.packets > 0
}

// heard takes a receiver report's blocks about this track's SSRC; true if the newest
// sequence number the viewer received advanced (or is the first it reported).
func (t *viewerTrack) heard(blocks []rtcp.ReceptionReport, ssrc uint32) bool {
	adv := false
	r := &t.reach
	for i := range blocks {
		if blocks[i].SSRC != ssrc {
			continue
		}
		out, _, written := t.log.newest()
		seq := uint16(blocks[i].LastSequenceNumber)
		if !written || int16(out-seq) < 0 {
			continue // nothing written yet, or ahead of what was: not a packet of ours
		}
		r.mu.Lock()
		if !r.armed || out-seq < out-r.reported {
			r.armed, r.reported, adv = true, seq, true
		}
		if r.pend && out-r.reported <= out-r.pendSeq {
			r.pend = false
		}
		r.mu.Unlock()
	}
	return adv
}

// overdue reports whether a packet written to this track more than d before now is
// still not reported received. Called by the report loop each tick: it takes the
// newest packet written as the one to wait for when none is awaited.
func (t *viewerTrack) overdue(now time.Time, d time.Duration) bool {
	out, at, written := t.log.newest()
	r := &t.reach
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.armed || !written {
		return false
	}
	if r.pend && out-r.reported <= out-r.pendSeq {
		r.pend = false
	}
	if !r.pend && r.reported != out {
		r.pend, r.pendSeq, r.pendAt = true, out, at
	}
	if r.pend && out == r.pendSeq && now.Sub(at) > reportInterval {
		// Nothing written after the awaited packet for a tick: a receiver learns of a
		// loss from the packets after it, so packets lost just before a pause (a mute,
		// the publisher gone) cannot show in its reports, and a viewer that lost them
		// is fine. The wait runs from when the stream goes on.
		r.pendAt = now
	}
	return r.pend && now.Sub(r.pendAt) > d
}

// heardReports records the report blocks of an RTCP packet about track t's SSRC.
func (v *viewer) heardReports(t *viewerTrack, blocks []rtcp.ReceptionReport) {
	b := t.binding.Load()
	if b == nil {
		return
	}
	if t.heard(blocks, b.ssrc) {
		v.progressAt.Store(time.Now().UnixNano())
	}
}

// checkReach closes the viewer when its reports show that the relay's packets have
// stopped reaching it (see above); called by the report loop each tick.
func (v *viewer) checkReach(now time.Time) {
	d := v.room.relay.opts.ViewerReportTimeout
	if d < 0 || v.closed.Load() || !v.connected.Load() {
		return
	}
	over := false
	for _, t := range v.tracks {
		if t == nil {
			continue
		}
		td := d
		if t.kind == webrtc.RTPCodecTypeAudio {
			td = audioReportFactor * d
		}
		if t.overdue(now, td) {
			over = true // every track's wait is updated, so no break
		}
	}
	if !over || now.Sub(time.Unix(0, v.progressAt.Load())) <= d {
		v.overdueTicks = 0
		return
	}
	v.overdueTicks++
	if v.overdueTicks < reachTicks {
		return
	}
	v.room.relay.log.Info("viewer not receiving: closed", "stream", v.room.id, "session", v.id,
		"reported_ago", now.Sub(time.Unix(0, v.progressAt.Load())).Round(time.Second))
	go v.close()
}
