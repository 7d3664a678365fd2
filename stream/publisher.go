package stream

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v3"
)

// publisher is a stream's WHIP session.
type publisher struct {
	id        string
	upstream  bool // pulled from the origin node, not a local WHIP session (cascade.go)
	pc        *webrtc.PeerConnection
	cands     *candidateSet // the remote candidates it was given (nil: an upstream's)
	videoSSRC atomic.Uint32
	closeOnce sync.Once
}

func (p *publisher) close() {
	p.closeOnce.Do(func() { _ = p.pc.Close() })
}

// publish negotiates the stream's single publisher.
func (rm *room) publish(ctx context.Context, offer string, _ []webrtc.RTPCodecType, cands *candidateSet) (string, string, error) {
	rm.mu.Lock()
	switch {
	case rm.ended:
		rm.mu.Unlock()
		return "", "", ErrEnded
	case rm.pub != nil || rm.publishing:
		rm.mu.Unlock()
		return "", "", ErrPublisherExists
	}
	rm.publishing = true
	rm.mu.Unlock()

	p, answer, err := rm.newPublisher(ctx, offer, cands)

	rm.mu.Lock()
	rm.publishing = false
	if err == nil && rm.ended {
		err = ErrEnded
	}
	if err != nil {
		rm.mu.Unlock()
		if p != nil {
			p.close()
		}
		return "", "", err
	}
	rm.pub = p
	rm.pubPtr.Store(p) // replaces an upstream, whose puller closes it
	pl := rm.pull
	rm.mu.Unlock()
	rm.relay.metrics.publishers.Inc()
	if pl != nil {
		pl.poke()
	}
	return answer, p.id, nil
}

func (rm *room) newPublisher(ctx context.Context, offer string, cands *candidateSet) (*publisher, string, error) {
	pc, err := rm.relay.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", err
	}
	p := &publisher{id: newResourceID(), pc: pc, cands: cands}
	pc.OnTrack(func(t *webrtc.TrackRemote, recv *webrtc.RTPReceiver) { rm.readTrack(p, t, recv) })
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			rm.removePublisher(p)
		}
	})
	answer, err := negotiate(ctx, pc, offer)
	if err != nil {
		return p, "", err
	}
	return p, answer, nil
}

// removePublisher closes the publisher and, unless the stream was ended, reports the
// stream as no longer live.
func (rm *room) removePublisher(p *publisher) {
	rm.mu.Lock()
	if rm.pub != p {
		rm.mu.Unlock()
		p.close()
		return
	}
	rm.pub = nil
	rm.pubPtr.Store(nil)
	ended := rm.ended
	rm.mu.Unlock()
	p.close()
	rm.relay.metrics.publishers.Dec()
	if !ended && rm.relay.opts.OnPublisher != nil {
		rm.relay.opts.OnPublisher(rm.id, p.id, false)
	}
	rm.pokePull() // after the callback: the origin is updated by then
	rm.relay.dropRoomIfIdle(rm)
}

// readTrack runs on pion's OnTrack goroutine for the life of the track: it reads each
// packet once and hands it to the viewers.
func (rm *room) readTrack(p *publisher, t *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	kind := t.Kind()
	if kind != kindAudio && kind != kindVideo {
		return
	}
	go drainRTCP(recv)
	c := t.Codec()
	codec := &codecInfo{mime: strings.ToLower(c.MimeType), fmtp: c.SDPFmtpLine, clock: c.ClockRate}
	if codec.clock == 0 {
		codec.clock = 90000
	}
	rm.gen[kind].Add(1)
	if kind == kindVideo {
		p.videoSSRC.Store(uint32(t.SSRC()))
		rm.waitKeyframeAll()
		rm.requestKeyframe()
	}
	baseline := rm.baseline[kind]
	var g *gop
	if kind == kindVideo {
		g = &gop{}
	}
	lag := lagTracker{clock: float64(codec.clock)}
	var ext int64
	var lastSeq uint16
	for {
		pkt, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		if len(pkt.Payload) == 0 || rm.pubPtr.Load() != p {
			continue // an upstream a local publisher replaced, until its puller closes it
		}
		ext += int64(int16(pkt.SequenceNumber - lastSeq))
		lastSeq = pkt.SequenceNumber
		now := time.Now()
		var drop, resumed bool
		if baseline == nil {
			drop, resumed = lag.drop(now, pkt.Timestamp)
		}
		if drop {
			rm.relay.metrics.late.Inc()
			if g != nil {
				g.invalidate()
			}
			continue
		}
		if resumed {
			rm.gen[kind].Add(1) // viewers rebase: their output stays continuous
			if kind == kindVideo {
				rm.waitKeyframeAll()
				rm.requestKeyframe()
			}
		}
		if rm.muted(kind) {
			if g != nil {
				g.invalidate()
			}
			continue
		}
		if baseline != nil {
			_ = baseline.WriteRTP(pkt)
			continue
		}
		pk := &packet{kind: kind, hdr: pkt.Header, payload: pkt.Payload, codec: codec, gen: rm.gen[kind].Load(), ext: ext, at: now}
		if kind == kindVideo {
			pk.keyStart = isKeyframeStart(codec.mime, pkt.Payload)
		}
		rm.hist[kind].put(pk) // before the viewers can see it, so they can NACK it
		rm.fanout(pk, g)
		if g != nil {
			g.add(pk)
		}
	}
}

// drainRTCP reads a receiver's RTCP so interceptors see sender reports.
func drainRTCP(recv *webrtc.RTPReceiver) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := recv.Read(buf); err != nil {
			return
		}
	}
}
