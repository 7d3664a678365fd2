package stream

import "time"

// Ingest lag guard. When the process gets too little CPU, pion's UDP mux queues the
// publisher's packets without bound and the relay would forward them later and later.
// The relay compares each packet's RTP timestamp with its arrival time; once packets
// come more than maxIngestLag late it stops forwarding (which frees the CPU the
// viewers' writers used, so the backlog drains) and resumes on fresh packets, video on
// a keyframe: a short freeze instead of ever-growing delay.
const (
	maxIngestLag   = time.Second
	resumeLag      = 200 * time.Millisecond
	maxBehindSpell = 2 * time.Second // then re-baseline: never stall longer on a false alarm
)

// lagTracker estimates how late packets arrive against the RTP clock. The baseline is
// the earliest arrival seen, drifting slowly so clock skew is absorbed.
type lagTracker struct {
	clock  float64
	init   bool
	base   time.Time // arrival time the baseline assigns to baseTS
	baseTS uint32

	behind      bool
	behindSince time.Time
}

// observe returns the packet's lag beyond the baseline.
func (l *lagTracker) observe(now time.Time, ts uint32) time.Duration {
	if !l.init {
		l.init, l.base, l.baseTS = true, now, ts
		return 0
	}
	media := time.Duration(float64(int32(ts-l.baseTS)) / l.clock * float64(time.Second))
	lag := now.Sub(l.base) - media
	switch {
	case lag < 0: // earlier than ever: a new baseline
		l.base, l.baseTS = now, ts
		return 0
	case media > 10*time.Minute || media < -10*time.Minute: // keep int32 far from wrapping
		l.base, l.baseTS = now.Add(-lag), ts
	}
	l.base = l.base.Add(lag / 100_000) // absorbs clock skew over minutes
	return lag
}

// drop tells whether the packet is too late to forward, tracking the behind state;
// resumed is true on the first packet forwarded after a spell behind.
func (l *lagTracker) drop(now time.Time, ts uint32) (drop, resumed bool) {
	lag := l.observe(now, ts)
	if !l.behind {
		if lag <= maxIngestLag {
			return false, false
		}
		l.behind, l.behindSince = true, now
		return true, false
	}
	if lag > resumeLag && now.Sub(l.behindSince) < maxBehindSpell {
		return true, false
	}
	if lag > resumeLag { // a spell too long: take the present lag as normal
		l.base, l.baseTS = now, ts
	}
	l.behind = false
	return false, true
}
