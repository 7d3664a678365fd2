package web

import (
	"context"
	"sync"
	"time"
)

// muteFollowInterval is how often a node with a live publisher reads the stream's
// media mute from the store: a mute set through any node reaches the relay that
// forwards the media within this interval (and after a store outage, once it ends).
const muteFollowInterval = 200 * time.Millisecond

// muteFollowers keeps one follower per stream whose publisher is on this node.
type muteFollowers struct {
	mu   sync.Mutex
	stop map[string]chan struct{} // guarded by mu; stream id → closed to stop its follower
}

// followMute applies the stored mute to the relay now (a stream muted before its
// publisher arrived stays muted: no media flows before the WHIP answer is sent) and
// then keeps following the store until the publisher leaves.
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

// unfollowMute stops the stream's follower (its publisher left).
func (s *Server) unfollowMute(sid string) {
	s.mute.mu.Lock()
	defer s.mute.mu.Unlock()
	if stop := s.mute.stop[sid]; stop != nil {
		close(stop)
		delete(s.mute.stop, sid)
	}
}

// followMuteLoop polls the store while the stream has a publisher on this node. It
// also ends by itself when the relay no longer has the publisher (stream ended).
func (s *Server) followMuteLoop(m Media, sid string, stop chan struct{}) {
	defer s.forgetFollower(sid, stop)
	t := time.NewTicker(muteFollowInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if !m.Live(sid) {
			return
		}
		s.applyStoredMute(m, sid)
	}
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
