// Package cart holds livecart's durable state: streams, products, pins, flash sales,
// holds, checkout and orders, behind one Store interface with an embedded (bbolt) and a
// Redis implementation that pass one conformance suite.
package cart

import "time"

// StreamStatus is the life cycle of a stream: idle → live → idle … → ended (final).
type StreamStatus string

// Stream statuses.
const (
	StreamIdle  StreamStatus = "idle"
	StreamLive  StreamStatus = "live"
	StreamEnded StreamStatus = "ended"
)

// Stream is a creator's live event as stored. The HTTP layer adds viewers and URLs.
type Stream struct {
	ID        string       `json:"id"`
	Title     string       `json:"title"`
	CreatorID string       `json:"creator_id"`
	Status    StreamStatus `json:"status"`
	StreamKey string       `json:"stream_key,omitempty"`
	CreatedAt time.Time    `json:"created_at"`
	StartedAt *time.Time   `json:"started_at"`
	EndedAt   *time.Time   `json:"ended_at"`
}

// MediaMute is whether a stream's audio and video are muted for viewers. It is shared
// state (any node may change it; the publisher's node applies it to the relay) and not
// part of the public Stream.
type MediaMute struct {
	AudioMuted bool `json:"audio_muted"`
	VideoMuted bool `json:"video_muted"`
}

// MediaOrigin is where a stream's media is published: the node that holds its WHIP
// session. Viewers on other nodes pull the media from there (WHEP to URL). Shared
// state, not part of the public Stream; the zero value means published nowhere.
type MediaOrigin struct {
	NodeID  string `json:"node_id"`
	URL     string `json:"url"`     // the node's internal base URL (cluster.advertise_url)
	Session string `json:"session"` // the WHIP session's resource id on that node
	// Seen is when the origin node last claimed it (on the reader's clock, see
	// Store.MediaOrigin): it renews the claim while its publisher is there, so an
	// origin not seen for a while is a node that is gone.
	Seen time.Time `json:"seen"`
}

// Product is an item a stream sells. Stock, Held and Sold count only units at the
// product's own price; units inside sales are counted by the sales.
type Product struct {
	ID          string `json:"id"`
	StreamID    string `json:"stream_id"`
	SKU         string `json:"sku"`
	Title       string `json:"title"`
	Description string `json:"description"`
	PriceCents  int64  `json:"price_cents"`
	Currency    string `json:"currency"`
	ImageURL    string `json:"image_url"`
	Stock       int    `json:"stock"`
	Held        int    `json:"held"`
	Sold        int    `json:"sold"`
	Hidden      bool   `json:"hidden"`
}

// Sale statuses.
const (
	SaleScheduled = "scheduled"
	SaleActive    = "active"
	SaleEnded     = "ended"
)

// Sale is a flash sale: Quantity = Remaining + Held + Sold + Returned, always.
type Sale struct {
	ID           string    `json:"id"`
	StreamID     string    `json:"stream_id"`
	ProductID    string    `json:"product_id"`
	PriceCents   int64     `json:"price_cents"`
	Quantity     int       `json:"quantity"`
	Remaining    int       `json:"remaining"`
	Held         int       `json:"held"`
	Sold         int       `json:"sold"`
	Returned     int       `json:"returned"`
	PerUserLimit int       `json:"per_user_limit"`
	StartsAt     time.Time `json:"starts_at"`
	EndsAt       time.Time `json:"ends_at"`
	Status       string    `json:"status"`
}

// Hold is units reserved for one user until ExpiresAt.
type Hold struct {
	ID             string    `json:"id"`
	UserID         string    `json:"-"`
	StreamID       string    `json:"stream_id"`
	ProductID      string    `json:"product_id"`
	SaleID         string    `json:"sale_id,omitempty"`
	Quantity       int       `json:"quantity"`
	UnitPriceCents int64     `json:"unit_price_cents"`
	Currency       string    `json:"currency"`
	ExpiresAt      time.Time `json:"expires_at"`
	Expired        bool      `json:"expired"`
}

// OrderItem is one line of an order.
type OrderItem struct {
	ProductID      string `json:"product_id"`
	SaleID         string `json:"sale_id,omitempty"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// Order is a placed checkout.
type Order struct {
	ID             string      `json:"id"`
	UserID         string      `json:"user_id"`
	StreamID       string      `json:"stream_id"`
	Items          []OrderItem `json:"items"`
	TotalCents     int64       `json:"total_cents"`
	Currency       string      `json:"currency"`
	Status         string      `json:"status"`
	CreatedAt      time.Time   `json:"created_at"`
	ExpiredHoldIDs []string    `json:"expired_hold_ids"`
}

// AuditEntry records one moderation or sale action on a stream.
type AuditEntry struct {
	ID        string         `json:"id"`
	StreamID  string         `json:"stream_id"`
	ActorID   string         `json:"actor_id"`
	ActorRole string         `json:"actor_role"`
	Action    string         `json:"action"`
	Target    string         `json:"target"`
	Details   map[string]any `json:"details"`
	At        time.Time      `json:"at"`
}
