package rtctest

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v3"
)

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

// A publisher starved of CPU (its goroutine waits tens of ms for a thread, so its
// tickers drop ticks) still stamps RTP timestamps by the wall clock, as a capture
// clock does: a relay judging ingest lag by them (stream/lag.go) must not take a
// slow test publisher for a backlog and drop its packets. Failed before: audio
// timestamps advanced by 960 per tick actually served, about half the time sent.
func TestPublisherClockUnderStarvation(t *testing.T) {
	api, err := NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPublisher(api, PublisherOptions{Bitrate: 300_000, FPS: 15, KeyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	recv, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	type sample struct {
		ts   uint32
		sent time.Time
	}
	var mu sync.Mutex
	got := map[webrtc.RTPCodecType][]sample{}
	recv.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if sent, _, ok := ReadStamp(pkt.Payload); ok {
				mu.Lock()
				got[tr.Kind()] = append(got[tr.Kind()], sample{pkt.Timestamp, sent})
				mu.Unlock()
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = p.Connect(ctx, func(ctx context.Context, offer string) (string, error) {
		if err := recv.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
			return "", err
		}
		answer, err := recv.CreateAnswer(nil)
		if err != nil {
			return "", err
		}
		gathered := webrtc.GatheringCompletePromise(recv)
		if err := recv.SetLocalDescription(answer); err != nil {
			return "", err
		}
		<-gathered
		return recv.LocalDescription().SDP, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Starve: one P, and spinning goroutines that the scheduler preempts every 10 ms.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var stop atomic.Bool
	var spinners sync.WaitGroup
	for range 6 {
		spinners.Add(1)
		go func() {
			defer spinners.Done()
			for !stop.Load() {
			}
		}()
	}
	runCtx, stopRun := context.WithTimeout(context.Background(), 2*time.Second)
	defer stopRun()
	p.Run(runCtx)
	stop.Store(true)
	spinners.Wait()
	time.Sleep(200 * time.Millisecond) // the last packets arrive

	mu.Lock()
	defer mu.Unlock()
	for kind, clock := range map[webrtc.RTPCodecType]float64{webrtc.RTPCodecTypeAudio: 48000, webrtc.RTPCodecTypeVideo: 90000} {
		s := got[kind]
		if len(s) < 10 {
			t.Fatalf("%s: got %d packets, want 10 at least", kind, len(s))
		}
		first, last := s[0], s[len(s)-1]
		media := time.Duration(float64(last.ts-first.ts) / clock * float64(time.Second))
		wall := last.sent.Sub(first.sent)
		if d := wall - media; d > 150*time.Millisecond || d < -150*time.Millisecond {
			t.Errorf("%s: %d packets sent over %v carry timestamps spanning %v, want the same within 150 ms",
				kind, len(s), wall, media)
		}
	}
}
