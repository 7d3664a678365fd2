package web

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/livecart/livecart/cart"
)

// A publisher's leave that the store did not take (it did not answer within
// Options.StoreTimeout) is not dropped: the stream would stay live for ever in the
// store, on GET /api/streams/{sid} and on the viewers' screens, with no media
// flowing. The node keeps the leave as its own pending intent and a background loop
// records it, with backoff, once the store answers again, and then tells the viewers.
// What must be shared stays in the store: Store.SetStreamLive fences by WHIP session,
// so the retry of an old session's leave never overwrites a publisher that came back
// meanwhile (on this node or another), a late write never undoes a newer one, and an
// ended stream is never revived. The node keeps nothing but its own pending leaves.

// Bounds of the leave retry's backoff: the first retry comes leaveRetryMin after the
// failure, each failed pass doubles the wait up to leaveRetryMax, so a leave is
// recorded within about leaveRetryMax (+ one store call) of the store's return.
const (
	leaveRetryMin = 200 * time.Millisecond
	leaveRetryMax = 2 * time.Second
)

// pendingLeave is a publisher's leave not yet recorded: its stream and WHIP session.
type pendingLeave struct{ stream, session string }

// pendingLeaves are this node's publisher leaves that wait for the store.
type pendingLeaves struct {
	mu      sync.Mutex
	pending map[pendingLeave]struct{} // guarded by mu
	running bool                      // guarded by mu: retryLeaves runs
	closed  bool                      // guarded by mu: Close was called
	stop    chan struct{}             // closed by Close
}

// PendingLeaves tells how many publisher leaves wait for the store on this node.
func (s *Server) PendingLeaves() int {
	s.leaves.mu.Lock()
	defer s.leaves.mu.Unlock()
	return len(s.leaves.pending)
}

// Close stops the leave retries (their intents are this node's memory only: a leave
// still pending is lost, as the node's publishers are).
func (s *Server) Close() {
	s.leaves.mu.Lock()
	defer s.leaves.mu.Unlock()
	if !s.leaves.closed {
		s.leaves.closed = true
		if s.leaves.stop != nil {
			close(s.leaves.stop)
		}
	}
}

// publisherLeft records that the stream's publisher session has left: the stream goes
// idle unless another publisher has come since. A store that does not answer leaves
// the leave pending, retried in the background (retryLeaves).
func (s *Server) publisherLeft(sid, session string) {
	ctx, cancel := s.storeCtx(context.Background())
	_, err := s.setStreamLive(ctx, sid, session, false)
	cancel()
	if retryable(err) {
		s.retryLeave(sid, session)
	}
}

// retryable: a store error that a later try may not get (not a business answer).
func retryable(err error) bool {
	return err != nil && !errors.Is(err, cart.ErrNotFound) && !errors.Is(err, cart.ErrConflict)
}

// retryLeave keeps a leave the store did not take and starts the retry loop if it is
// not running.
func (s *Server) retryLeave(sid, session string) {
	l := &s.leaves
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if l.pending == nil {
		l.pending = map[pendingLeave]struct{}{}
		l.stop = make(chan struct{})
	}
	l.pending[pendingLeave{sid, session}] = struct{}{}
	s.log.Warn("publisher leave not recorded: retrying until the store answers", "stream", sid, "session", session)
	if !l.running {
		l.running = true
		go s.retryLeaves(l.stop)
	}
}

// retryLeaves records the pending leaves until none is left, one pass after each
// wait; a pass stops at the first store error (the store does not answer yet) and
// the wait doubles up to leaveRetryMax, with a little jitter so that nodes do not
// retry in step.
func (s *Server) retryLeaves(stop chan struct{}) {
	wait := leaveRetryMin
	for {
		t := time.NewTimer(wait + rand.N(wait/4+1))
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		if s.retryPass() {
			wait = leaveRetryMin
		} else {
			wait = min(2*wait, leaveRetryMax)
		}
		l := &s.leaves
		l.mu.Lock()
		if len(l.pending) == 0 || l.closed {
			l.running = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
	}
}

// retryPass tries each pending leave once; false if the store still failed one.
func (s *Server) retryPass() bool {
	l := &s.leaves
	l.mu.Lock()
	todo := make([]pendingLeave, 0, len(l.pending))
	for p := range l.pending {
		todo = append(todo, p)
	}
	l.mu.Unlock()
	for _, p := range todo {
		ctx, cancel := s.storeCtx(context.Background())
		applied, err := s.setStreamLive(ctx, p.stream, p.session, false)
		cancel()
		if retryable(err) {
			return false
		}
		l.mu.Lock()
		delete(l.pending, p)
		l.mu.Unlock()
		s.log.Info("publisher leave recorded after a store outage", "stream", p.stream, "session", p.session, "idle", applied, "err", err)
	}
	return true
}
