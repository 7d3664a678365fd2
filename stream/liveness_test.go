package stream

import (
	"fmt"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// TestReachFirstReportOfNothing: a viewer's report from before it received anything
// (pion's names sequence number 0) neither hides the real reports after it nor makes
// the track overdue, wherever the output's numbers start (0 is behind them, ahead of
// them, or just after a wrap); the real reports keep it from being overdue, and a
// packet not reported for over the timeout is. (Before: with numbers from 40,000 the
// real reports read as older than 0, never advanced, and the track was never found
// overdue: the viewer's outgoing path could die unnoticed.)
func TestReachFirstReportOfNothing(t *testing.T) {
	const d = 10 * time.Second
	for _, first := range []uint16{100, 20000, 40000, 65500} {
		t.Run(fmt.Sprint(first), func(t *testing.T) {
			tr := &viewerTrack{}
			t0 := time.Now()
			report := func(seq uint16) bool {
				return tr.heard([]rtcp.ReceptionReport{{SSRC: 7, LastSequenceNumber: uint32(seq)}}, 7)
			}
			write := func(from, to uint16, at time.Time) {
				for s := from; s != to+1; s++ {
					tr.log.logWrite(tr.log.packets == 0, segment{}, s, 0, true, 100, at)
				}
			}
			if report(0) {
				t.Error("a report before anything was written advanced")
			}
			write(first, first, t0)
			report(0) // pion's, before the first packet arrived
			write(first+1, first+50, t0)
			if !report(first + 50) {
				t.Fatal("the first real report did not advance")
			}
			if tr.overdue(t0.Add(2*d), d) {
				t.Fatal("overdue with everything reported")
			}
			write(first+51, first+100, t0.Add(2*d))
			if tr.overdue(t0.Add(2*d+time.Second), d) {
				t.Fatal("overdue a second after the write")
			}
			// Nothing written after them (a pause): the viewer cannot tell it lost them.
			if tr.overdue(t0.Add(3*d+time.Second), d) {
				t.Fatal("overdue with nothing written after the unreported packets")
			}
			write(first+101, first+110, t0.Add(3*d+1500*time.Millisecond))
			if tr.overdue(t0.Add(3*d+2*time.Second), d) {
				t.Fatal("overdue a second after the stream went on")
			}
			write(first+111, first+120, t0.Add(4*d+1500*time.Millisecond))
			if !tr.overdue(t0.Add(4*d+2*time.Second), d) {
				t.Fatal("not overdue with packets unreported for over the timeout")
			}
			if !report(first+120) || tr.overdue(t0.Add(4*d+3*time.Second), d) {
				t.Fatal("still overdue after the viewer reported them")
			}
			if report(first + 90) {
				t.Fatal("an older report advanced")
			}
		})
	}
}

// TestAudioOnlyViewerWaitsLonger: a viewer that receives only audio (here its video
// muted) is judged on its audio reports, which a browser sends only every 2.5 to 7.5 s,
// so one report lost on the way leaves 15 s without one against the 10 s timeout. Its
// audio track waits audioReportFactor timeouts: with its reports cut for longer than
// the timeout and its ticks (which closed it before) it stays and receives; with them
// cut for good it is closed, after audioReportFactor timeouts.
func TestAudioOnlyViewerWaitsLonger(t *testing.T) {
	t.Parallel() // waits out timeouts: see TestMain
	// The timeout leaves room on a loaded machine (CI runs this beside other tests with
	// -race): the awaited packet may have been written up to a tick before the cut, so
	// the audio track closes at the earliest (audioReportFactor*timeout + (reachTicks-1)
	// ticks - 1 tick) after the cut, 13 s; the cut below ends at timeout + reachTicks+2
	// ticks, 9 s, and leaves the viewer 4 s for a report to come through. (With 2 s it
	// had 0 to 1.5 s and once timed out in CI.) Closing on the video timeout, as before,
	// happens by timeout + reachTicks+1 ticks, 8 s, so the test still catches it.
	const timeout = 4 * time.Second
	r, _ := newTestRelay(t, Options{ViewerReportTimeout: timeout})
	startPublisher(t, r, "audio")
	cn, a := newCutAPI(t)
	cv, v := reportingViewer(t, a, r, "audio", "the viewer")
	yes, no := true, false
	r.SetMute("audio", &no, &yes)
	time.Sleep(2 * reportInterval) // its reports of the last video are in

	cutReports := func() time.Time {
		cn.rtcpOut.Store(true)
		return time.Now()
	}
	cut := cutReports()
	// The video timeout, its ticks and some: long enough that it was closed before.
	time.Sleep(timeout + (reachTicks+2)*reportInterval)
	if v.closed.Load() || r.Viewers("audio") != 1 {
		t.Fatalf("closed within %v of its reports' cut with only audio flowing: the audio timeout is %v", time.Since(cut).Round(100*time.Millisecond), audioReportFactor*timeout)
	}
	cn.rtcpOut.Store(false)
	// A report from after the cut's end: one already on its way when the cut began
	// can land after it (CI once saw that one pass this wait; the next report had
	// not come when the cut below began, and the awaited packet was the first cut's).
	resumed := time.Now()
	waitFor(t, slow(5*time.Second), "its reports again", func() bool {
		return v.progressAt.Load() > resumed.UnixNano()
	})
	before := cv.Stats().Audio.Packets
	waitFor(t, slow(5*time.Second), "audio after the cut", func() bool {
		return cv.Stats().Audio.Packets >= before+20
	})

	// Cut for good: closed, not before the audio timeout.
	cut = cutReports()
	bound := audioReportFactor*timeout + (reachTicks+3)*reportInterval
	waitFor(t, bound+slow(2*time.Second), "the relay closing the viewer without reports", func() bool {
		return r.Viewers("audio") == 0
	})
	if took := time.Since(cut); took < audioReportFactor*timeout {
		t.Fatalf("closed %v after its reports' cut, before the audio timeout %v", took, audioReportFactor*timeout)
	}
}
