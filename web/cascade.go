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
	client *http.Client
}

var _ stream.Upstream = (*Cascade)(nil)

// NewCascade returns the Upstream of node nodeID.
func NewCascade(store cart.Store, nodeID string) *Cascade {
	// No keep-alive: a node signals to another twice per upstream, and idle
	// connections would outlive the upstreams.
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	return &Cascade{store: store, nodeID: nodeID, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// Origin returns the base URL of the node that publishes the stream, "" when none
// other does; stream.ErrEnded once the stream has ended.
func (c *Cascade) Origin(ctx context.Context, sid string) (string, error) {
	o, err := c.store.MediaOrigin(ctx, sid)
	switch {
	case errors.Is(err, cart.ErrConflict), errors.Is(err, cart.ErrNotFound):
		return "", stream.ErrEnded
	case err != nil:
		return "", err
	case o.NodeID == c.nodeID || o.URL == "":
		return "", nil
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
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxSDPBody))
	if err != nil {
		return "", "", fmt.Errorf("cascade: POST %s: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", "", fmt.Errorf("cascade: POST %s: %s: %.200s", endpoint, resp.Status, body)
	}
	loc, err := resp.Location()
	if err != nil {
		return "", "", fmt.Errorf("cascade: POST %s: no Location: %w", endpoint, err)
	}
	return string(body), loc.String(), nil
}

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
