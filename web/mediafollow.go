package web

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/livecart/livecart/cart"
)

// muteFollowInterval is how often a node that forwards a stream's media (its
// publisher is here, or it pulls the stream from the publisher's node) reads the
// stream's media mute from the store: a mute set through any node reaches every relay
// that forwards the media within this interval (and after a store outage, once it
// ends).
const muteFollowInterval = 200 * time.Millisecond

// muteFollowers keeps one follower per stream whose media this node forwards.
type muteFollowers struct {
	mu   sync.Mutex
	stop map[string]chan struct{} // guarded by mu; stream id → closed to stop its follower
}

// followMute applies the stored mute to the relay now (a stream muted before its
// publisher arrived stays muted: no media flows before the WHIP answer is sent) and
// then keeps following the store while this node forwards the stream's media.
func (s *Server) followMute(sid string) {
	m, err := s.media()
	if err != nil {
		return
	}
	s.applyStoredMute(m, sid)
	stop := make(chan struct{})
	s.mute.mu.Lock()
	if s.mute.stop == nil {
		s.mute.stop = map[string]chan struct{}{}
	}
	if old := s.mute.stop[sid]; old != nil {
		close(old)
	}
	s.mute.stop[sid] = stop
	s.mute.mu.Unlock()
	go s.followMuteLoop(m, sid, stop)
}

// followMuteLoop polls the store while the stream's media passes through this node
// (publisher here, or pulled from its origin). An ended stream ends here too: a
// stream ended through another node stops its publisher and viewers on this one.
func (s *Server) followMuteLoop(m Media, sid string, stop chan struct{}) {
	defer s.forgetFollower(sid, stop)
	t := time.NewTicker(muteFollowInterval)
	defer t.Stop()
	var renewed time.Time
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if !m.Live(sid) && !m.Pulling(sid) {
			return
		}
		renew := time.Since(renewed) >= originRenewInterval
		if renew {
			renewed = time.Now()
		}
		if s.followOrigin(m, sid, renew) {
			m.EndStream(sid)
			return
		}
		s.applyStoredMute(m, sid)
	}
}

// followOrigin renews this node's claim as the origin while the publisher is here,
// if renew (cascade.go), and tells whether the stream has ended.
func (s *Server) followOrigin(m Media, sid string, renew bool) (ended bool) {
	if !s.clustered() {
		return false // a stream ends through this node, which ends it in the relay
	}
	ctx, cancel := context.WithTimeout(context.Background(), muteFollowInterval)
	defer cancel()
	if session := m.PublisherSession(sid); renew && session != "" {
		return s.renewOrigin(ctx, m, sid, session)
	}
	_, err := s.deps.Store.MediaOrigin(ctx, sid, s.deps.Now())
	return errors.Is(err, cart.ErrConflict)
}

func (s *Server) forgetFollower(sid string, stop chan struct{}) {
	s.mute.mu.Lock()
	defer s.mute.mu.Unlock()
	if s.mute.stop[sid] == stop {
		delete(s.mute.stop, sid)
	}
}

// applyStoredMute sets the relay's mute to the store's; on a store error the relay
// keeps its state and the next poll tries again.
func (s *Server) applyStoredMute(m Media, sid string) {
	ctx, cancel := context.WithTimeout(context.Background(), muteFollowInterval)
	defer cancel()
	want, err := s.deps.Store.MediaMute(ctx, sid)
	if err != nil {
		return
	}
	if a, v := m.Mute(sid); a != want.AudioMuted || v != want.VideoMuted {
		m.SetMute(sid, &want.AudioMuted, &want.VideoMuted)
	}
}
