package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/stream"
)

// Cascade is the relay's stream.Upstream: it reads a stream's origin (the node that
// holds its WHIP session) from the shared store and opens WHEP sessions there over
// plain HTTP, as any anonymous viewer would.
type Cascade struct {
	store  cart.Store
	nodeID string
	now    func() time.Time
	client *http.Client
}

var _ stream.Upstream = (*Cascade)(nil)

// NewCascade returns the Upstream of node nodeID; now is the clock (nil: time.Now).
func NewCascade(store cart.Store, nodeID string, now func() time.Time) *Cascade {
	if now == nil {
		now = time.Now
	}
	// No keep-alive: a node signals to another twice per upstream, and idle
	// connections would outlive the upstreams.
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	return &Cascade{store: store, nodeID: nodeID, now: now, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// Origin returns the base URL of the node that publishes the stream, "" when none
// other does; stream.ErrEnded once the stream has ended. An origin whose claim went
// stale (its node is gone, or could not write to the store for a while) comes with
// stream.ErrOriginStale.
func (c *Cascade) Origin(ctx context.Context, sid string) (string, error) {
	o, err := c.store.MediaOrigin(ctx, sid, c.now())
	switch {
	case errors.Is(err, cart.ErrConflict), errors.Is(err, cart.ErrNotFound):
		return "", stream.ErrEnded
	case err != nil:
		return "", err
	case o.NodeID == c.nodeID || o.URL == "":
		return "", nil
	case !o.Seen.After(c.now().Add(-originTTL)):
		return o.URL, stream.ErrOriginStale
	}
	return o.URL, nil
}

// Subscribe posts a WHEP offer to origin and returns the answer and the session URL.
func (c *Cascade) Subscribe(ctx context.Context, origin, sid, offer string) (string, string, error) {
	endpoint := strings.TrimRight(origin, "/") + whep.prefix + url.PathEscape(sid)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(offer))
	if err != nil {
		return "", "", fmt.Errorf("cascade: %w", err)
	}
	req.Header.Set("Content-Type", contentTypeSDP)
	req.Header.Set("User-Agent", "livecart-cascade/"+c.nodeID)
	resp, err := c.client.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("cascade: POST %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return "", "", fmt.Errorf("cascade: POST %s: %s: %.200s", endpoint, resp.Status, body)
	}
	loc, err := resp.Location()
	if err != nil {
		return "", "", fmt.Errorf("cascade: POST %s: no Location: %w", endpoint, err)
	}
	// The origin has made the session: from here on a failure ends it there, or it
	// would wait for its ICE timeouts (about 15 s) holding a viewer's place.
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxSDPBody))
	if err != nil {
		c.hangUp(loc.String())
		return "", "", fmt.Errorf("cascade: POST %s: %w", endpoint, err)
	}
	return string(body), loc.String(), nil
}

// hangUp ends a session whose signalling failed, on a context of its own: the
// signalling's may be what ran out.
func (c *Cascade) hangUp(session string) {
	ctx, cancel := context.WithTimeout(context.Background(), hangUpTimeout)
	defer cancel()
	_ = c.Unsubscribe(ctx, session)
}

// hangUpTimeout bounds the DELETE of a session whose signalling failed.
const hangUpTimeout = 2 * time.Second

// Unsubscribe ends a session with DELETE on its URL (one already gone is fine).
func (c *Cascade) Unsubscribe(ctx context.Context, session string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, session, nil)
	if err != nil {
		return fmt.Errorf("cascade: %w", err)
	}
	req.Header.Set("User-Agent", "livecart-cascade/"+c.nodeID)
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("cascade: DELETE %s: %w", session, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		return fmt.Errorf("cascade: DELETE %s: %s", session, resp.Status)
	}
	return nil
}

// originTTL is how long a node's claim to publish a stream holds without renewal. The
// publisher's node renews it every originRenewInterval; a node that is gone (crashed,
// cut off) loses it after originTTL, and a publisher may then go live on another node.
const (
	originTTL           = 5 * time.Second
	originRenewInterval = time.Second
)

// clustered: other nodes share the store (Options.AdvertiseURL is set), so this node
// keeps its claims as the origin of the streams published here. A single node (the
// embedded store) keeps none: no store write per live stream every second, and no
// claim of its previous process (crashed, with another pid in its default node id)
// refuses its publisher.
func (s *Server) clustered() bool { return s.deps.Options.AdvertiseURL != nil }

// claimOrigin records this node as the stream's origin for the publisher's session.
// False when another node's publisher holds a fresh claim (two WHIPs raced past
// checkNoPublisherElsewhere) or the stream has ended: the new publisher is then
// refused (closed) here.
func (s *Server) claimOrigin(ctx context.Context, sid, session string) bool {
	if !s.clustered() {
		return true
	}
	o := cart.MediaOrigin{NodeID: s.deps.Options.NodeID, Session: session}
	if f := s.deps.Options.AdvertiseURL; f != nil {
		o.URL = f()
	}
	err := s.deps.Store.ClaimMediaOrigin(ctx, sid, o, s.deps.Now(), originTTL)
	switch {
	case errors.Is(err, cart.ErrConflict):
		s.log.Warn("publisher refused: the stream is published on another node or has ended", "stream", sid, "err", err)
		if m, merr := s.media(); merr == nil {
			_ = m.Delete(sid, session, stream.RolePublisher)
		}
		return false
	case err != nil:
		// Viewers on other nodes find the publisher once a renewal gets through.
		s.log.Warn("record media origin", "stream", sid, "err", err)
	}
	return true
}

// renewOrigin keeps this node's claim on a stream whose publisher is here. A claim
// that is gone is made again; one another node took (this node's went stale) means
// that node's publisher is the stream's now, and the one here is closed. ended: the
// stream has ended.
func (s *Server) renewOrigin(ctx context.Context, m Media, sid, session string) (ended bool) {
	renewed, err := s.deps.Store.RenewMediaOrigin(ctx, sid, session, s.deps.Now())
	switch {
	case errors.Is(err, cart.ErrConflict):
		return true
	case err != nil || renewed:
		return false
	}
	o := cart.MediaOrigin{NodeID: s.deps.Options.NodeID, Session: session}
	if f := s.deps.Options.AdvertiseURL; f != nil {
		o.URL = f()
	}
	err = s.deps.Store.ClaimMediaOrigin(ctx, sid, o, s.deps.Now(), originTTL)
	if errors.Is(err, cart.ErrConflict) && m.PublisherSession(sid) == session {
		s.log.Warn("publisher closed: the stream went live on another node", "stream", sid)
		_ = m.Delete(sid, session, stream.RolePublisher)
	}
	return false
}

// checkNoPublisherElsewhere: WHIP while another node's publisher holds a fresh claim
// on the stream → 409 conflict, as for a second publisher on one node.
func (s *Server) checkNoPublisherElsewhere(ctx context.Context, sid string) error {
	if !s.clustered() {
		return nil
	}
	o, err := s.deps.Store.MediaOrigin(ctx, sid, s.deps.Now())
	if err != nil {
		return err
	}
	if o.Session != "" && o.NodeID != s.deps.Options.NodeID && o.Seen.After(s.deps.Now().Add(-originTTL)) {
		return apiError(http.StatusConflict, "conflict", "stream already has a publisher")
	}
	return nil
}

// OnUpstream is the relay's upstream callback: while this node pulls the stream from
// its origin, it follows the stored media mute too (the origin applies it as well).
func (s *Server) OnUpstream(streamID string, up bool) {
	if up {
		s.followMute(streamID)
	}
}
