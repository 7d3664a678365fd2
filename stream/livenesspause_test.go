package stream

import (
	"testing"
	"time"
)

// TestViewerTailLossBeforePauseStays: a viewer that lost the last packets written to it
// before the stream paused (the host muted both kinds; or its publisher went away)
// cannot report them: nothing after them shows it the loss, so its reports name an
// older packet for as long as nothing more is written. It is fine (its path works, it
// receives the sender reports), and it stays for three times the timeout and receives
// again when the stream goes on. (Before: the packets lost just before the pause were
// taken as unreported for over the timeout and the relay closed it ~13 s into a pause
// with the default 10 s.)
func TestViewerTailLossBeforePauseStays(t *testing.T) {
	t.Parallel() // waits out timeouts: see TestMain
	for _, c := range []struct {
		name   string
		pause  func(r *Relay, stopPub func(), prid string)
		resume func(r *Relay)
	}{
		{"muted", func(r *Relay, _ func(), _ string) {
			yes := true
			r.SetMute("tail", &yes, &yes)
		}, func(r *Relay) {
			no := false
			r.SetMute("tail", &no, &no)
		}},
		{"publisher gone", func(r *Relay, stopPub func(), prid string) {
			stopPub()
			_ = r.Delete("tail", prid, RolePublisher)
		}, func(r *Relay) {}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // each waits out 3 timeouts on its own relay
			const timeout = 3 * time.Second
			r, _ := newTestRelay(t, Options{ViewerReportTimeout: timeout})
			_, prid, stopPub := startPublisher(t, r, "tail")
			cn, a := newCutAPI(t)
			cv, v := reportingViewer(t, a, r, "tail", "the viewer")
			// The last packets before the pause are lost on the way to the viewer.
			cn.in.Store(true)
			time.Sleep(300 * time.Millisecond)
			c.pause(r, stopPub, prid)
			time.Sleep(300 * time.Millisecond) // anything queued is written (and lost)
			cn.in.Store(false)
			time.Sleep(3 * timeout)
			if n := r.Viewers("tail"); n != 1 || v.closed.Load() {
				t.Fatalf("%d viewers, the viewer closed %v: a viewer that lost the packets before a pause was closed", n, v.closed.Load())
			}
			if c.name == "publisher gone" {
				startPublisher(t, r, "tail")
			} else {
				c.resume(r)
			}
			receiving(t, cv, 5, "the viewer, after the pause")
		})
	}
}
