package stream

import (
	"testing"
	"time"
)

// A viewer whose writer stalls drops its stale video until the next keyframe: the
// packet that starts the drop is counted as dropped, and every video packet skipped
// after it, until the keyframe, as skipped (before, nothing counted them).
func TestSkippedVideoIsCounted(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	p, _, _ := startPublisher(t, r, "s1")
	v, rid := startViewer(t, r, "s1")
	receiving(t, v, 5, "media before the stall")
	sv := serverViewer(t, r, "s1", rid)
	d := sv.direct()
	if d == nil {
		t.Fatal("viewer not on the relay's own SRTP output")
	}
	dropped0, skipped0 := testutilValue(r.metrics.dropped), testutilValue(r.metrics.skipped)
	video0 := sv.sent[kindVideo].Load()
	sent0 := p.PacketsSent.Load()
	d.mu.Lock() // the viewer's writer stalls at its next packet
	time.Sleep(maxQueueDelay + 300*time.Millisecond)
	stalled := p.PacketsSent.Load() - sent0
	d.mu.Unlock()
	receiving(t, v, 5, "media after the stall") // a keyframe came (the relay asked for one)
	dropped := testutilValue(r.metrics.dropped) - dropped0
	skipped := testutilValue(r.metrics.skipped) - skipped0
	t.Logf("publisher sent %d packets during the stall; relay dropped %v, skipped %v, wrote %d video since",
		stalled, dropped, skipped, sv.sent[kindVideo].Load()-video0)
	if dropped < 1 {
		t.Errorf("dropped %v, want >= 1 (the stale packet that starts the drop)", dropped)
	}
	// 300 kb/s at 15 fps is ~3 video packets a frame: over 0.5 s stale, a dozen or more.
	if skipped < 10 {
		t.Errorf("skipped %v, want >= 10 (the stale video after the first)", skipped)
	}
}
