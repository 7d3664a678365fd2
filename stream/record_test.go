package stream

import (
	"testing"
	"time"
)

// A recording viewer gets every packet the publisher sent while it recorded, once,
// matched by payload (the load generator's loss is counted this way), with its RTP
// sequence number and a latency measured from the publisher's send time.
func TestViewerRecordsWhatThePublisherSent(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	p, _, stop := startPublisher(t, r, "s1")
	v, _ := startViewer(t, r, "s1")
	receiving(t, v, 5, "media before recording")
	v.Record()
	from := uint32(p.PacketsSent.Load())
	time.Sleep(slow(time.Second))
	to := uint32(p.PacketsSent.Load())
	stop() // the publisher's last packets are then in flight or delivered
	time.Sleep(slow(300 * time.Millisecond))
	rec := v.Recorded()
	if to-from < 20 {
		t.Fatalf("publisher sent %d packets in the window, want >= 20", to-from)
	}
	got := map[uint32]int{}
	lastSeq := map[bool]int64{}
	for _, a := range rec {
		if a.Stamp <= from || a.Stamp > to {
			continue
		}
		got[a.Stamp]++
		if a.Latency < 0 || a.Latency > slow(time.Second) {
			t.Errorf("stamp %d: latency %v, want in [0, 1s]", a.Stamp, a.Latency)
		}
		if last, ok := lastSeq[a.Video]; ok && a.Seq != last+1 {
			t.Errorf("stamp %d (video %v): RTP sequence %d after %d, want consecutive", a.Stamp, a.Video, a.Seq, last)
		}
		lastSeq[a.Video] = a.Seq
	}
	for s := from + 1; s <= to; s++ {
		if got[s] != 1 {
			t.Errorf("stamp %d recorded %d times, want once", s, got[s])
		}
	}
	if len(v.Recorded()) != 0 {
		t.Error("Recorded after Recorded returned arrivals: recording did not stop")
	}
}
