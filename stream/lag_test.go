package stream

import (
	"testing"
	"time"
)

func TestLagTrackerDropsLatePacketsAndResumes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := lagTracker{clock: 90000}
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	ts := func(n int) uint32 { return uint32(n * 90) } // media time n ms
	steps := []struct {
		arrive, media int
		drop, resumed bool
	}{
		{0, 0, false, false},
		{33, 33, false, false},
		{100, 66, false, false},   // 34 ms late: jitter
		{1500, 100, true, false},  // 1.4 s late: behind
		{1600, 200, true, false},  // still late
		{1700, 1650, false, true}, // caught up (50 ms)
		{1733, 1683, false, false},
		{5000, 1716, true, false},  // behind again, and it stays so
		{6000, 1750, true, false},  // 1 s into the spell
		{7100, 1783, false, true},  // over 2 s: accept the present lag
		{7133, 1816, false, false}, // forwarded from the new baseline
	}
	for i, s := range steps {
		drop, resumed := l.drop(ms(s.arrive), ts(s.media))
		if drop != s.drop || resumed != s.resumed {
			t.Errorf("step %d (arrive %d ms, media %d ms): got drop %v resumed %v, want %v %v",
				i, s.arrive, s.media, drop, resumed, s.drop, s.resumed)
		}
	}
}
