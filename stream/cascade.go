package stream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v3"
)

// Cascade: several nodes share one service, but a stream's publisher is on one of
// them. A room with viewers and no local publisher pulls the stream from the node that
// has it: one upstream peer connection per room, a WHEP client of the origin node,
// whose tracks feed the room exactly as a local publisher's would (fan-out,
// keyframe-on-join with PLIs sent upstream, NACK, sequence rewriting, mute).

// Upstream finds a stream's origin and opens WHEP sessions there. The relay knows no
// HTTP: the web layer implements it.
type Upstream interface {
	// Origin returns the address of the node that publishes the stream, or "" when no
	// other node does (nobody publishes it, or this node does). ErrEnded when the
	// stream has ended. ErrOriginStale, with the address, when that node has not
	// renewed its claim lately: it may be gone, or only unable to reach the store.
	Origin(ctx context.Context, streamID string) (string, error)
	// Subscribe sends a WHEP offer for the stream to the origin and returns the answer
	// and the session's address for Unsubscribe.
	Subscribe(ctx context.Context, origin, streamID, offer string) (answer, session string, err error)
	// Unsubscribe ends a session Subscribe opened.
	Unsubscribe(ctx context.Context, session string) error
}

// ErrOriginStale: the origin's node has not renewed its claim on the stream lately (it
// crashed, or the shared store took no writes for a while). A new upstream is not
// opened to it; one already connected to it is kept: its media shows the node is up.
var ErrOriginStale = errors.New("stream origin not renewed lately")

// Cascade defaults.
const (
	defaultPullInterval  = 200 * time.Millisecond
	defaultUpstreamGrace = 2 * time.Second
	// pullRetry is the least time between two attempts to open an upstream.
	pullRetry = time.Second
	// defaultUpstreamTimeout bounds one signalling exchange (Options.UpstreamTimeout).
	defaultUpstreamTimeout = 5 * time.Second
)

// puller follows a room's origin while the room has viewers and no local publisher.
// Its goroutine (run) owns the upstream; the room holds it in pull (guarded by the
// room's mu) and stops it with stop.
type puller struct {
	rm   *room
	wake chan struct{} // poked on changes (publisher, viewers, upstream state)
	stop chan struct{}
	done chan struct{}
	once sync.Once

	// Owned by run.
	up        *publisher // the upstream, when open
	origin    string
	session   string
	idleSince time.Time // no viewers since (zero while there are some)
	lastTry   time.Time
}

func newPuller(rm *room) *puller {
	return &puller{rm: rm, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

func (pl *puller) poke() {
	select {
	case pl.wake <- struct{}{}:
	default:
	}
}

func (pl *puller) halt() { pl.once.Do(func() { close(pl.stop) }) }

// run follows the origin until the room ends or has had no viewers for the grace.
func (pl *puller) run() {
	defer close(pl.done)
	r := pl.rm.relay
	t := time.NewTicker(r.opts.PullInterval)
	defer t.Stop()
	for pl.step() {
		select {
		case <-pl.stop:
			pl.closeUpstream()
			return
		case <-t.C:
		case <-pl.wake:
		}
	}
	pl.closeUpstream()
	r.dropRoomIfIdle(pl.rm)
}

// step does one round; false when the puller is done (the room forgot it).
func (pl *puller) step() bool {
	rm := pl.rm
	rm.mu.Lock()
	viewers, local, ended := len(rm.viewers), rm.pub != nil, rm.ended
	if ended || (viewers == 0 && (pl.up == nil || pl.graceOver())) {
		if rm.pull == pl {
			rm.pull = nil
		}
		rm.mu.Unlock()
		return false
	}
	rm.mu.Unlock()
	if viewers > 0 {
		pl.idleSince = time.Time{}
	} else if pl.idleSince.IsZero() {
		pl.idleSince = time.Now()
	}
	if local {
		pl.closeUpstream()
		return true
	}
	if pl.up != nil && !alive(pl.up.pc) {
		pl.closeUpstream()
	}
	ctx, cancel := context.WithTimeout(context.Background(), rm.relay.opts.UpstreamTimeout)
	defer cancel()
	origin, err := rm.relay.opts.Upstream.Origin(ctx, rm.id)
	switch {
	case errors.Is(err, ErrEnded):
		go rm.relay.EndStream(rm.id) // end() stops this puller
		return true
	case errors.Is(err, ErrOriginStale):
		if pl.up != nil && origin == pl.origin && pl.up.pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
			return true
		}
		origin = "" // a node that may be gone: pull from it no more
	case err != nil:
		return true // keep what we have; try again next round
	case origin == pl.origin && pl.up != nil:
		return true
	}
	pl.closeUpstream()
	if origin == "" || viewers == 0 || time.Since(pl.lastTry) < pullRetry {
		return true
	}
	pl.lastTry = time.Now()
	if err := pl.openUpstream(ctx, origin); err != nil {
		rm.relay.log.Warn("cascade: pull from origin", "stream", rm.id, "origin", origin, "err", err)
	}
	return true
}

func (pl *puller) graceOver() bool {
	return !pl.idleSince.IsZero() && time.Since(pl.idleSince) >= pl.rm.relay.opts.UpstreamGrace
}

// alive: the upstream is neither failed nor closed (a DTLS close from the origin
// leaves the ICE state connected, so the transport is checked too).
func alive(pc *webrtc.PeerConnection) bool {
	switch pc.ConnectionState() {
	case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
		return false
	}
	for _, tr := range pc.GetTransceivers() {
		if recv := tr.Receiver(); recv != nil {
			if dt := recv.Transport(); dt != nil {
				switch dt.State() {
				case webrtc.DTLSTransportStateClosed, webrtc.DTLSTransportStateFailed:
					return false
				}
			}
		}
	}
	return true
}

// openUpstream negotiates a receive-only peer with the origin and installs it as the
// room's source, unless a local publisher arrived meanwhile.
func (pl *puller) openUpstream(ctx context.Context, origin string) error {
	rm := pl.rm
	pc, err := rm.relay.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	up := &publisher{id: newResourceID(), pc: pc, upstream: true}
	for _, k := range []webrtc.RTPCodecType{kindAudio, kindVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			up.close()
			return err
		}
	}
	pc.OnTrack(func(t *webrtc.TrackRemote, recv *webrtc.RTPReceiver) { rm.readTrack(up, t, recv) })
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed {
			pl.poke()
		}
	})
	session, err := rm.relay.offerUpstream(ctx, pc, origin, rm.id)
	if err != nil {
		up.close()
		return err
	}
	if !rm.pubPtr.CompareAndSwap(nil, up) { // a local publisher came first
		up.close()
		pl.hangUp(session)
		return nil
	}
	pl.up, pl.origin, pl.session = up, origin, session
	rm.relay.metrics.upstreams.Inc()
	rm.relay.log.Debug("cascade: pulling", "stream", rm.id, "origin", origin)
	if cb := rm.relay.opts.OnUpstream; cb != nil {
		cb(rm.id, true)
	}
	return nil
}

// offerUpstream runs offer/answer with every candidate in the offer (no trickle).
func (r *Relay) offerUpstream(ctx context.Context, pc *webrtc.PeerConnection, origin, sid string) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	answer, session, err := r.subscribeUpstream(ctx, origin, sid, pc.LocalDescription().SDP)
	if err != nil {
		return "", err
	}
	err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
	if err != nil {
		// The origin's session would otherwise wait for its ICE timeouts.
		r.endUpstreamSession(session)
		return "", fmt.Errorf("upstream answer: %w", err)
	}
	return session, nil
}

// subscribeUpstream sends the offer to the origin and returns its answer and session,
// or ctx's error once ctx ends (the caller gives up). The exchange itself runs on for
// up to UpstreamTimeout more: an answer that comes back after the caller gave up (the
// origin made the session; the answer was slow on the way) has its session ended at
// once, not left to the origin's ICE timeouts (about 15 s). Close waits for it.
func (r *Relay) subscribeUpstream(ctx context.Context, origin, sid, offer string) (answer, session string, err error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(r.opts.UpstreamTimeout)
	}
	sctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline.Add(r.opts.UpstreamTimeout))
	type reply struct {
		answer, session string
		err             error
	}
	got := make(chan reply) // unbuffered: the caller takes the reply, or the goroutine ends its session
	r.pullers.Add(1)
	go func() {
		defer r.pullers.Done()
		defer cancel()
		a, s, err := r.opts.Upstream.Subscribe(sctx, origin, sid, offer)
		select {
		case got <- reply{a, s, err}:
		case <-ctx.Done():
			if err == nil {
				r.log.Debug("cascade: answer came after the pull gave up; ending its session", "stream", sid, "origin", origin)
				r.endUpstreamSession(s)
			}
		}
	}()
	select {
	case rep := <-got:
		return rep.answer, rep.session, rep.err
	case <-ctx.Done():
		return "", "", fmt.Errorf("upstream offer: %w", ctx.Err())
	}
}

// endUpstreamSession ends a session on the origin, on a context of its own (the
// signalling's may be spent).
func (r *Relay) endUpstreamSession(session string) {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.UpstreamTimeout)
	defer cancel()
	if err := r.opts.Upstream.Unsubscribe(ctx, session); err != nil {
		r.log.Debug("cascade: end upstream session", "session", session, "err", err)
	}
}

// closeUpstream stops pulling: the room forgets the source (its packets are dropped
// from now on), the peer closes and the origin's session ends.
func (pl *puller) closeUpstream() {
	up := pl.up
	if up == nil {
		return
	}
	rm := pl.rm
	pl.up, pl.origin = nil, ""
	rm.pubPtr.CompareAndSwap(up, nil)
	sayGoodbye(up.pc)
	up.close()
	pl.hangUp(pl.session)
	pl.session = ""
	rm.relay.metrics.upstreams.Dec()
	if cb := rm.relay.opts.OnUpstream; cb != nil {
		cb(rm.id, false)
	}
}

func (pl *puller) hangUp(session string) { pl.rm.relay.endUpstreamSession(session) }

// sayGoodbye tells the origin, on the media path, that this upstream is leaving: an
// RTCP BYE naming the origin's media SSRCs, which reaches the origin's senders (see
// viewer.readRTCP), so the origin ends the session at once even if the DELETE that
// follows is lost. (A DTLS close_notify alone goes unnoticed by pion until the ICE
// timeouts, about 15 s.)
func sayGoodbye(pc *webrtc.PeerConnection) {
	var ssrcs []uint32
	for _, recv := range pc.GetReceivers() {
		for _, t := range recv.Tracks() {
			if t.SSRC() != 0 {
				ssrcs = append(ssrcs, uint32(t.SSRC()))
			}
		}
	}
	if len(ssrcs) > 0 {
		_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.Goodbye{Sources: ssrcs, Reason: "upstream closed"}})
	}
}

// startPullLocked starts the room's puller if the relay cascades and none runs.
// Called with rm.mu held.
func (rm *room) startPullLocked() {
	if rm.relay.opts.Upstream == nil || rm.pull != nil || rm.ended {
		return
	}
	rm.pull = newPuller(rm)
	rm.relay.pullers.Add(1)
	go func(pl *puller) {
		defer rm.relay.pullers.Done()
		pl.run()
	}(rm.pull)
}

// pokePull wakes the room's puller, if any.
func (rm *room) pokePull() {
	rm.mu.Lock()
	pl := rm.pull
	rm.mu.Unlock()
	if pl != nil {
		pl.poke()
	}
}

// pulling tells whether the room's source is an upstream.
func (rm *room) pulling() bool {
	p := rm.pubPtr.Load()
	return p != nil && p.upstream
}
