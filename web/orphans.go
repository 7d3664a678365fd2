package web

import (
	"context"
	"errors"
	"time"

	"github.com/livecart/livecart/cart"
)

// A node that dies with a stream's publisher (kill -9, a crash, a lost host) records no
// leave: the stream would stay live for ever, on GET and on every viewer's screen, with
// no media. Its claim as the stream's origin is no longer renewed, so every node looks,
// now and then, for live streams whose origin claim went stale and whose node is gone
// (originGone), and records their publisher's leave itself (fenced by the session, as
// any leave: a publisher that came since keeps the stream live), telling the viewers.
//
// A claim also goes stale while Redis is unreachable for every node, and the live
// publishers' nodes renew theirs only once it answers again. So a node looks only after
// its own previous look, orphanInterval earlier, found Redis answering, and takes a
// claim for a dead node's after orphanAfter without renewal: one renewed every
// originRenewInterval by a node that reaches Redis is never that old when two looks in
// a row got through.
const (
	orphanInterval = originTTL
	orphanAfter    = 2 * originTTL
)

// ReleaseOrphanedStreams records idle, until ctx ends, the live streams whose
// publisher's node is gone (see above). Only on a node that shares its store with
// others (clustered); a single node's streams are its own (cmd/livecart records the
// embedded store's live streams idle at start).
func (s *Server) ReleaseOrphanedStreams(ctx context.Context) {
	if !s.clustered() {
		return
	}
	t := time.NewTicker(orphanInterval)
	defer t.Stop()
	answered := false // the previous look found the store answering
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		answered = s.releaseOrphans(ctx, answered)
	}
}

// releaseOrphans is one look: it records idle the live streams whose origin claim is
// older than orphanAfter, if release (else it only looks), and tells whether the store
// answered every call.
func (s *Server) releaseOrphans(ctx context.Context, release bool) bool {
	lctx, cancel := s.storeCtx(ctx)
	streams, err := s.deps.Store.ListStreams(lctx)
	cancel()
	if err != nil {
		return false
	}
	for _, st := range streams {
		if st.Status != cart.StreamLive || ctx.Err() != nil {
			continue
		}
		octx, cancel := s.storeCtx(ctx)
		o, err := s.deps.Store.MediaOrigin(octx, st.ID, s.deps.Now())
		cancel()
		switch {
		case errors.Is(err, cart.ErrNotFound), errors.Is(err, cart.ErrConflict):
			continue // gone or ended meanwhile
		case err != nil:
			return false
		case !release || o.Session == "" || o.Seen.After(s.deps.Now().Add(-orphanAfter)):
			continue
		}
		gone, err := s.originGone(ctx, st.ID, o)
		if err != nil {
			return false
		}
		if !gone {
			continue
		}
		lctx, cancel := s.storeCtx(ctx)
		applied, err := s.setStreamLive(lctx, st.ID, o.Session, false)
		cancel()
		if retryable(err) {
			return false
		}
		if applied {
			s.log.Warn("stream idle: its publisher's node is gone (its origin claim was not renewed)",
				"stream", st.ID, "node", o.NodeID, "session", o.Session)
		}
	}
	return ctx.Err() == nil
}

// originGone tells whether the node of a stale origin claim is gone: this node's own
// id with the session not in its relay (an earlier process's, killed), or another node
// that holds no claim on its id (Options.NodeRunning: a running node's renewals may be
// late, in a sale storm that makes its store calls wait).
func (s *Server) originGone(ctx context.Context, sid string, o cart.MediaOrigin) (bool, error) {
	if o.NodeID == s.deps.Options.NodeID {
		m, err := s.media()
		return err != nil || m.PublisherSession(sid) != o.Session, nil
	}
	if s.deps.Options.NodeRunning == nil {
		return true, nil
	}
	ctx, cancel := s.storeCtx(ctx)
	defer cancel()
	running, err := s.deps.Options.NodeRunning(ctx, o.NodeID)
	return !running, err
}
