package stream

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v3"
)

// pliInterval is the least time between two keyframe requests sent to a publisher.
const pliInterval = time.Second

const (
	kindAudio = webrtc.RTPCodecTypeAudio
	kindVideo = webrtc.RTPCodecTypeVideo
)

// codecInfo describes the codec of a publisher's track.
type codecInfo struct {
	mime, fmtp string
	clock      uint32
}

// packet is one RTP packet read from the publisher, shared read-only by every viewer.
type packet struct {
	kind     webrtc.RTPCodecType
	hdr      rtp.Header
	payload  []byte
	codec    *codecInfo
	keyStart bool
	at       time.Time // read from the publisher
	// gen changes when the source changes (new publisher track, unmute): viewers then
	// rebase their sequence numbers and timestamps so their output stays continuous.
	gen uint64
	// ext is the sequence number extended past its wraps by the track's reader, which
	// sees every packet, those dropped for a viewer too: how far a viewer's next packet
	// is from its last, however many it missed.
	ext int64
}

// room is one stream: at most one publisher and any number of viewers.
type room struct {
	id    string
	relay *Relay

	mu         sync.Mutex
	pub        *publisher         // guarded by mu
	publishing bool               // guarded by mu: a Publish is negotiating
	viewers    map[string]*viewer // guarded by mu
	ended      bool               // guarded by mu
	pull       *puller            // guarded by mu: follows the origin (cascade.go)

	// pubPtr is the room's source: the local publisher or an upstream (cascade.go).
	// Only its packets are forwarded and its PLIs sent.
	pubPtr     atomic.Pointer[publisher]
	viewerList atomic.Pointer[[]*viewer] // copy-on-write snapshot for the fan-out
	audioMuted atomic.Bool
	videoMuted atomic.Bool
	gen        [3]atomic.Uint64 // per kind

	kfMu      sync.Mutex
	kfLast    time.Time   // guarded by kfMu
	kfTimer   *time.Timer // guarded by kfMu
	kfPending bool        // guarded by kfMu: a viewer asked (PLI/FIR)
	kfStopped bool        // guarded by kfMu

	baseline [3]*webrtc.TrackLocalStaticRTP // Baseline mode only
	// hist keeps each kind's newest packets for viewers' NACKs (nil in Baseline).
	hist [3]*history
}

func newRoom(r *Relay, id string) *room {
	rm := &room{id: id, relay: r, viewers: map[string]*viewer{}}
	empty := []*viewer{}
	rm.viewerList.Store(&empty)
	if !r.opts.Baseline {
		rm.hist[kindAudio] = newHistory(r.opts.NACKBuffer)
		rm.hist[kindVideo] = newHistory(r.opts.NACKBuffer)
	} else {
		rm.baseline[kindVideo], _ = webrtc.NewTrackLocalStaticRTP(
			webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "livecart")
		rm.baseline[kindAudio], _ = webrtc.NewTrackLocalStaticRTP(
			webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "audio", "livecart")
	}
	return rm
}

// idle: nothing worth keeping. Called with the relay's mu held.
func (rm *room) idle() bool {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.pub == nil && !rm.publishing && len(rm.viewers) == 0 && rm.pull == nil &&
		!rm.audioMuted.Load() && !rm.videoMuted.Load()
}

// hasPublisher: the stream's publisher is on this node (not an upstream).
func (rm *room) hasPublisher() bool {
	p := rm.pubPtr.Load()
	return p != nil && !p.upstream
}

func (rm *room) muted(kind webrtc.RTPCodecType) bool {
	if kind == kindAudio {
		return rm.audioMuted.Load()
	}
	return rm.videoMuted.Load()
}

// setMute applies a mute change. Unmuting video makes every viewer wait for a
// keyframe, which is requested at once.
func (rm *room) setMute(audio, video *bool) (bool, bool) {
	// On unmute the generation moves on before the flag clears: the reader loads the
	// flag, then the generation, so a packet it lets through after the mute always
	// carries the new generation and every viewer rebases its numbering on it (a packet
	// with the old one could land on sequence numbers, and SRTP indices, already used).
	if audio != nil {
		if !*audio && rm.audioMuted.Load() {
			rm.gen[kindAudio].Add(1)
		}
		rm.audioMuted.Store(*audio)
	}
	if video != nil {
		if !*video && rm.videoMuted.Load() {
			rm.gen[kindVideo].Add(1)
			rm.waitKeyframeAll()
			rm.videoMuted.Store(false)
			rm.requestKeyframe()
		} else {
			rm.videoMuted.Store(*video)
		}
	}
	return rm.audioMuted.Load(), rm.videoMuted.Load()
}

// waitKeyframeAll makes every active viewer drop video until the next keyframe.
func (rm *room) waitKeyframeAll() {
	for _, v := range *rm.viewerList.Load() {
		if t := v.tracks[kindVideo]; t != nil {
			t.waitKey.Store(true)
		}
	}
}

func (rm *room) anyWaitingKeyframe() bool {
	for _, v := range *rm.viewerList.Load() {
		if t := v.tracks[kindVideo]; t != nil && t.active.Load() && t.waitKey.Load() {
			return true
		}
	}
	return false
}

// requestKeyframe sends a PLI to the publisher now if the last one is a second old,
// else schedules one; while viewers still wait, it is repeated every second.
func (rm *room) requestKeyframe() {
	rm.kfMu.Lock()
	defer rm.kfMu.Unlock()
	rm.kfPending = true
	if rm.kfTimer != nil || rm.kfStopped {
		return
	}
	wait := time.Until(rm.kfLast.Add(pliInterval))
	if wait <= 0 {
		rm.sendPLILocked()
		wait = pliInterval
	}
	rm.kfTimer = time.AfterFunc(wait, rm.keyframeTick)
}

func (rm *room) keyframeTick() {
	waiting := rm.anyWaitingKeyframe()
	rm.kfMu.Lock()
	defer rm.kfMu.Unlock()
	rm.kfTimer = nil
	if rm.kfStopped || (!waiting && !rm.kfPending) {
		return
	}
	rm.sendPLILocked()
	rm.kfTimer = time.AfterFunc(pliInterval, rm.keyframeTick)
}

func (rm *room) sendPLILocked() {
	rm.kfPending = false
	p := rm.pubPtr.Load()
	if p == nil {
		return
	}
	ssrc := p.videoSSRC.Load()
	if ssrc == 0 {
		return
	}
	rm.kfLast = time.Now()
	rm.relay.metrics.pli.Inc()
	_ = p.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
}

func (rm *room) stopTimers() {
	rm.kfMu.Lock()
	defer rm.kfMu.Unlock()
	rm.kfStopped = true
	if rm.kfTimer != nil {
		rm.kfTimer.Stop()
		rm.kfTimer = nil
	}
}

// gopLimit bounds the packets kept since the last keyframe: a joining viewer gets
// them at once (a decodable picture without waiting for a PLI) only when the keyframe
// is recent enough for the whole group to fit.
const gopLimit = 96

// gop holds the packets since the publisher's last keyframe. It belongs to the video
// reader goroutine.
type gop struct {
	pkts  []*packet
	valid bool
	gen   uint64
}

// add keeps pk, which the fan-out has already handled.
func (g *gop) add(pk *packet) {
	switch {
	case pk.keyStart:
		g.pkts, g.valid, g.gen = append(make([]*packet, 0, 64), pk), true, pk.gen
	case !g.valid:
	case pk.gen != g.gen || len(g.pkts) >= gopLimit:
		g.invalidate()
	default:
		g.pkts = append(g.pkts, pk)
	}
}

func (g *gop) invalidate() { g.pkts, g.valid = nil, false }

// fanout hands a packet to every viewer's queue without ever blocking. A video viewer
// waiting for a keyframe starts at the next keyframe or, if the current group of
// pictures is cached and fits its queue, with that group now.
func (rm *room) fanout(pk *packet, g *gop) {
	needKey := false
	var woken uint64 // the writers of the viewers that got packets
	for _, v := range *rm.viewerList.Load() {
		t := v.tracks[pk.kind]
		if t == nil || !t.active.Load() {
			continue
		}
		rebase := false
		if pk.kind == kindVideo && t.waitKey.Load() {
			switch {
			case pk.keyStart:
			case g != nil && g.valid && g.gen == pk.gen && len(g.pkts)+1 <= cap(v.q)-len(v.q):
				if !v.enqueueGroup(g.pkts, pk) {
					needKey = true
					rm.relay.metrics.dropped.Inc()
				}
				woken |= 1 << v.w.idx
				continue
			default:
				needKey = true
				rm.relay.metrics.skipped.Inc()
				continue
			}
			t.waitKey.Store(false)
			rebase = true
		}
		select {
		case v.q <- entry{p: pk, rebase: rebase, at: pk.at}:
			woken |= 1 << v.w.idx
		default:
			rm.relay.metrics.dropped.Inc()
			if pk.kind == kindVideo {
				t.waitKey.Store(true)
				needKey = true
			}
		}
	}
	rm.relay.writers.wakeWriters(woken)
	if needKey {
		rm.requestKeyframe()
	}
}

func (rm *room) addViewer(v *viewer) error {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.ended {
		return ErrEnded
	}
	rm.viewers[v.id] = v
	rm.storeViewerListLocked()
	rm.relay.metrics.viewers.Inc()
	rm.startPullLocked()
	return nil
}

func (rm *room) removeViewer(v *viewer) {
	rm.mu.Lock()
	if rm.viewers[v.id] != v {
		rm.mu.Unlock()
		return
	}
	delete(rm.viewers, v.id)
	rm.storeViewerListLocked()
	rm.relay.metrics.viewers.Dec()
	pl := rm.pull
	rm.mu.Unlock()
	if pl != nil {
		pl.poke()
	}
	rm.relay.dropRoomIfIdle(rm)
}

func (rm *room) storeViewerListLocked() {
	list := make([]*viewer, 0, len(rm.viewers))
	for _, v := range rm.viewers {
		list = append(list, v)
	}
	rm.viewerList.Store(&list)
}

func (rm *room) deleteSession(id string, role Role) error {
	rm.mu.Lock()
	p, v := rm.pub, rm.viewers[id]
	rm.mu.Unlock()
	switch {
	case role == RolePublisher && p != nil && p.id == id:
		rm.removePublisher(p)
	case role == RoleViewer && v != nil:
		v.close()
	default:
		return ErrNotFound
	}
	return nil
}

func (rm *room) sessionPC(id string, role Role) *webrtc.PeerConnection {
	pc, _ := rm.session(id, role)
	return pc
}

// session returns the peer connection of the session of the role and the remote
// candidates it was given (nil, nil: no such session).
func (rm *room) session(id string, role Role) (*webrtc.PeerConnection, *candidateSet) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if role == RolePublisher && rm.pub != nil && rm.pub.id == id {
		return rm.pub.pc, rm.pub.cands
	}
	if v := rm.viewers[id]; role == RoleViewer && v != nil {
		return v.pc, v.cands
	}
	return nil, nil
}

// end closes every peer; the room is already out of the relay's map.
func (rm *room) end() {
	rm.mu.Lock()
	rm.ended = true
	p := rm.pub
	rm.pub = nil
	rm.pubPtr.Store(nil)
	viewers := *rm.viewerList.Load()
	pl := rm.pull
	rm.mu.Unlock()
	if pl != nil {
		pl.halt()
	}
	rm.stopTimers()
	if p != nil {
		p.close()
		rm.relay.metrics.publishers.Dec()
	}
	for _, v := range viewers {
		v.close()
	}
}

// negotiate applies an offer and returns the complete answer (all candidates in it).
func negotiate(ctx context.Context, pc *webrtc.PeerConnection, offer string) (string, error) {
	err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer})
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	if !acceptsMedia(answer.SDP) {
		return "", fmt.Errorf("%w: no audio or video codec in common", ErrBadOffer)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return pc.LocalDescription().SDP, nil
}
