package rtctest

import "testing"

// A paced keyframe leaves a few packets per 5 ms interval; unpaced it leaves at once.
func TestPublisherPacing(t *testing.T) {
	api, err := NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPublisher(api, PublisherOptions{Bitrate: 2_000_000, Pacing: 2.5})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// 2.5 × 2 Mb/s is 3,125 bytes per interval: three 1,112-byte packets (the third
	// overdraws the budget, which the next interval pays back).
	p.queueFrame(true, 33_000, 0, 0, 0)
	total := len(p.pending)
	if total < 30 {
		t.Fatalf("keyframe packets: got %d, want at least 30", total)
	}
	steps := []struct {
		tick bool
		want int64
	}{{false, 0}, {true, 3}, {false, 3}, {true, 6}, {true, 9}, {true, 12}}
	for i, s := range steps {
		p.sendPaced(s.tick)
		if got := p.PacketsSent.Load(); got != s.want {
			t.Fatalf("step %d: got %d packets sent, want %d", i, got, s.want)
		}
	}

	p.SetPacing(0)
	p.sendPaced(false)
	if got := p.PacketsSent.Load(); got != int64(total) || len(p.pending) != 0 {
		t.Fatalf("unpaced: got %d sent and %d pending, want %d and 0", got, len(p.pending), total)
	}

	// Unpaced sending spends no budget: paced again, the first interval sends at once.
	for range 3 {
		p.queueFrame(true, 33_000, 0, 0, 0)
		p.sendPaced(false)
	}
	p.SetPacing(2.5)
	p.queueFrame(true, 33_000, 0, 0, 0)
	before := p.PacketsSent.Load()
	p.sendPaced(true)
	if got := p.PacketsSent.Load() - before; got != 3 {
		t.Fatalf("first paced interval after unpaced frames: got %d sent, want 3", got)
	}
}
