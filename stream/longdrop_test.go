package stream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/livecart/livecart/stream/rtctest"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v3"
)

// audioPublisher is a real pion publisher of one Opus track whose sequence numbers
// and timestamps the test chooses.
type audioPublisher struct {
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticRTP
	seq   uint16
	ts    uint32
}

func startAudioPublisher(t *testing.T, r *Relay, sid string) *audioPublisher {
	t.Helper()
	pc, err := api(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	up := make(chan struct{})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			select {
			case <-up:
			default:
				close(up)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rtctest.Connect(ctx, pc, func(ctx context.Context, offer string) (string, error) {
		answer, _, err := r.Publish(ctx, sid, offer)
		return answer, err
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-up:
	case <-ctx.Done():
		t.Fatal("audio publisher not connected")
	}
	return &audioPublisher{pc: pc, track: track, seq: 1000, ts: 5000}
}

// send writes the next packet: sequence number and timestamp (20 ms) one further.
func (p *audioPublisher) send(t *testing.T) {
	t.Helper()
	payload := make([]byte, 40)
	payload[0] = 0xfc
	if err := p.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: p.seq, Timestamp: p.ts}, Payload: payload}); err != nil {
		t.Fatal(err)
	}
	p.seq++
	p.ts += 960
}

// paced sends a packet every 20 ms until the viewer's audio count reaches want (or the
// test's patience ends).
func (p *audioPublisher) paced(t *testing.T, got func() int, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(slow(8 * time.Second))
	for got() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the viewer has %d audio packets, want %d", what, got(), want)
		}
		p.send(t)
		time.Sleep(20 * time.Millisecond)
	}
}

// TestViewerAudioSurvivesALongDrop: a viewer whose writer is stalled (a slow viewer)
// while the publisher's audio moves on by 40,000 packets (all dropped for it) gets
// audio again once its writer runs. The relay's gap in its output numbering would be
// ~40,000: seen as a step back of ~25,000 (int16), each packet was taken for a late
// one and dropped, for good (from a gap of 49,152 on, written on SRTP indices already
// used, which the viewer rejects as replays).
func TestViewerAudioSurvivesALongDrop(t *testing.T) {
	for _, c := range []struct{ run, dropped int }{{0, 40_000}, {0, 60_000}, {20_000, 60_000}} {
		t.Run(fmt.Sprintf("run %d, dropped %d", c.run, c.dropped), func(t *testing.T) { longAudioDrop(t, c.run, c.dropped) })
	}
}

// longAudioDrop: run packets written to the viewer (a burst), then dropped packets
// while its writer is stalled, then paced ones the viewer must get.
func longAudioDrop(t *testing.T, run, dropped int) {
	r, _ := newTestRelay(t, Options{})
	pub := startAudioPublisher(t, r, "drop")
	v, rid := startViewer(t, r, "drop")
	sv := serverViewer(t, r, "drop", rid)
	audio := func() int { return v.Stats().Audio.Packets }
	pub.paced(t, audio, 10, "before the drop")
	for i := range run {
		pub.send(t)
		if i%64 == 63 {
			time.Sleep(time.Millisecond) // the viewer's queue keeps up
		}
	}

	d := sv.direct()
	if d == nil {
		t.Fatal("viewer not on the relay's own SRTP output")
	}
	d.mu.Lock() // the viewer's writer stalls at its next packet, on its output's lock
	time.Sleep(100 * time.Millisecond)
	before := audio()
	start := time.Now()
	for range dropped {
		pub.send(t)
	}
	time.Sleep(maxQueueDelay) // what the viewer's queue holds is stale by now
	d.mu.Unlock()
	t.Logf("%d packets sent in %v; the viewer got %d of them", dropped, time.Since(start), audio()-before)
	sent0 := sv.sent[kindAudio].Load()
	defer func() {
		t.Logf("the relay wrote %d audio packets after the drop", sv.sent[kindAudio].Load()-sent0)
	}()
	pub.paced(t, audio, audio()+10, "after the drop")
	s := v.Stats().Audio
	t.Logf("viewer audio: %d packets, %d expected, %d discontinuities", s.Packets, s.Expected, s.Discontinuities)
}
