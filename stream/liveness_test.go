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
