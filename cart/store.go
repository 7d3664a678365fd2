package cart

import (
	"context"
	"time"
)

// Store is livecart's shared durable state. Every method is safe for concurrent use,
// atomic (a failed call leaves no partial state) and returns ErrUnavailable (wrapped)
// when the backing store cannot be reached. Two implementations: BoltStore (embedded,
// the default) and RedisStore; both pass the conformance suite in store_test.go
// (RunStoreSuite).
//
// Every stock-changing operation is one store call: check, change and record happen in
// one transaction (bbolt) or one Lua script (Redis), so no unit is ever sold twice and
// the invariants hold at every moment:
//
//	per sale:    Quantity = Remaining + Held + Sold + Returned
//	per product: units put in = Stock + Held + Sold + Σ over its sales (Quantity − Returned)
//
// A product's units put in are its Stock at creation (no call adds units to a product
// from outside; one that does must add them to the units put in, in the same step);
// both stores keep them beside the product, written with it (GetProductUnits).
//
// The store does not validate shapes or ranges (the Service does); it enforces the
// business rules that need the stored state. Time is always passed in (now).
type Store interface {
	// CreateStream stores a new stream. ErrConflict if the id exists.
	CreateStream(ctx context.Context, s Stream) error
	// GetStream returns the stream with this id, or ErrNotFound.
	GetStream(ctx context.Context, id string) (Stream, error)
	// ListStreams returns the streams that are not ended, oldest first.
	ListStreams(ctx context.Context) ([]Stream, error)
	// SetStreamLive records that the publisher's WHIP session arrived (live: StartedAt
	// set when the stream first goes live) or left (idle), so that the newest intent
	// wins whatever order the writes land in (a retry, or a write that timed out and
	// reached the store late): the store keeps the session whose arrival is recorded
	// and the last one whose leave is. A leave of a session that is not the stream's
	// publisher (another came since, on any node) writes nothing, nor does the arrival
	// of a session whose leave is recorded; applied tells whether the status was
	// written, and the stream is returned either way. A leave also forgets the media
	// origin if it is still the session's. session "" is no session: its write
	// applies. ErrNotFound if unknown, ErrConflict if it has ended (never revived).
	SetStreamLive(ctx context.Context, id, session string, live bool, now time.Time) (st Stream, applied bool, err error)
	// EndStream ends the stream (final) and ends its scheduled and active sales exactly
	// as StopSale does (their remaining units go back to the product), returning the
	// sales it ended (after the change). Ending an ended stream returns it unchanged and
	// no sales. ErrNotFound if unknown.
	EndStream(ctx context.Context, id string, now time.Time) (Stream, []Sale, error)
	// SetMediaMute changes the stream's media mute for the kinds given (nil leaves a
	// kind as it is) in one atomic step and returns the state after the change.
	// ErrNotFound if the stream is unknown; ErrConflict if it has ended (nothing is
	// changed: its media is over).
	SetMediaMute(ctx context.Context, streamID string, audio, video *bool) (MediaMute, error)
	// MediaMute returns the stream's media mute (both false until set). ErrNotFound if
	// the stream is unknown.
	MediaMute(ctx context.Context, streamID string) (MediaMute, error)
	// ClaimMediaOrigin records o as where the stream is published, seen at now, unless
	// another node's origin was seen after now − ttl (ErrConflict: a publisher is on
	// another node). A new session of the same node replaces its claim at once (the
	// node's relay keeps one publisher per stream).
	// ErrNotFound if the stream is unknown, ErrConflict if it has ended.
	// The Redis store (shared by nodes) ignores now and uses Redis's clock, for the
	// stamp and the check, so the nodes' clocks need not agree; the embedded store
	// (one node) uses now.
	ClaimMediaOrigin(ctx context.Context, streamID string, o MediaOrigin, now time.Time, ttl time.Duration) error
	// RenewMediaOrigin sets the origin's Seen to now if it is still the session's
	// (renewed = true); it never records an origin that is not there. ErrNotFound if
	// the stream is unknown, ErrConflict if it has ended. The Redis store ignores now
	// (Redis's clock stamps the renewal).
	RenewMediaOrigin(ctx context.Context, streamID, session string, now time.Time) (renewed bool, err error)
	// ClearMediaOrigin forgets the origin if it is still the one of this WHIP session
	// (cleared = true); an origin another session has set since stays. ErrNotFound if
	// the stream is unknown.
	ClearMediaOrigin(ctx context.Context, streamID, session string) (cleared bool, err error)
	// MediaOrigin returns where the stream is published (zero when nowhere), its Seen
	// on the caller's clock (now at the call): the Redis store gives now minus the
	// claim's age by Redis's clock, so a caller judges freshness (Seen after now − ttl)
	// whatever its clock's skew; the embedded store gives Seen as stamped.
	// ErrNotFound if the stream is unknown; ErrConflict if it has ended (an ended
	// stream is published nowhere, whatever was recorded).
	MediaOrigin(ctx context.Context, streamID string, now time.Time) (MediaOrigin, error)
	// PutMediaSession records that the stream's WHEP session lives on the node at url
	// until now + ttl (a second put renews it), so that a DELETE or PATCH of it reaching
	// another node can be passed on there. Media sessions never outlive their node, so
	// the embedded store (one node) keeps them in memory; the Redis store (shared by
	// nodes) ignores now and lets Redis's clock expire them.
	PutMediaSession(ctx context.Context, streamID, session, url string, now time.Time, ttl time.Duration) error
	// MediaSession returns the url recorded for the stream's session, "" when none is
	// (never put, dropped, or lapsed by now).
	MediaSession(ctx context.Context, streamID, session string, now time.Time) (string, error)
	// DropMediaSession forgets the session's url (nothing when none is recorded).
	DropMediaSession(ctx context.Context, streamID, session string) error

	// CreateProduct stores a new product (p.ID set by the caller; Held, Sold = 0) and
	// returns it. ErrNotFound if the stream is unknown; ErrConflict if the stream has
	// ended, the id exists, p.Currency differs from the currency of the stream's other
	// products, or the stream has maxProducts products already (hidden ones count: they
	// are stored and listed too), counted in the creation's transaction or script, so
	// creations racing each other cannot pass the bound. maxProducts ≤ 0: no bound (the
	// service always passes cart.max_products_per_stream).
	CreateProduct(ctx context.Context, p Product, maxProducts int) (Product, error)
	// GetProduct returns the product (hidden or not), or ErrNotFound.
	GetProduct(ctx context.Context, id string) (Product, error)
	// GetProductUnits returns, for each of the ids that names a product (the others
	// are left out), in the order given, the product with the numbers of its invariant,
	// each product read with its sales at one moment (one read transaction, or one
	// script of its stream), so the invariant holds in what it returns unless the
	// store's numbers are wrong.
	GetProductUnits(ctx context.Context, ids []string) ([]ProductUnits, error)
	// ListProducts returns all the stream's products, hidden ones too, oldest first
	// (empty, not nil, for an unknown stream).
	ListProducts(ctx context.Context, streamID string) ([]Product, error)
	// SetProductHidden hides or unhides the product. Hiding a pinned product also
	// unpins it (unpinned = true). Setting the current value again changes nothing
	// (changed = false). ErrNotFound if unknown.
	SetProductHidden(ctx context.Context, id string, hidden bool) (p Product, changed, unpinned bool, err error)

	// PinProduct appends the product to the stream's ordered pins and returns the pins
	// after the change. Pinning a pinned product changes nothing (changed = false).
	// ErrNotFound if the product is unknown or of another stream; ErrConflict if it is
	// hidden, the stream has ended, or maxPins are already pinned.
	PinProduct(ctx context.Context, streamID, productID string, maxPins int) (pinned []Product, changed bool, err error)
	// UnpinProduct removes the product from the stream's pins and returns the pins after
	// the change; unpinning a product that is not pinned changes nothing. ErrNotFound if
	// the product is unknown or of another stream.
	UnpinProduct(ctx context.Context, streamID, productID string) (pinned []Product, changed bool, err error)
	// ListPinned returns the stream's pinned products in pin order (empty, not nil).
	ListPinned(ctx context.Context, streamID string) ([]Product, error)

	// CreateSale stores a new sale (s.ID, StreamID, ProductID, PriceCents, Quantity,
	// PerUserLimit, StartsAt, EndsAt set by the caller; Status scheduled if StartsAt is
	// after now, else active; Remaining = Quantity) and takes its Quantity units out of
	// the product's stock, returning both after the change. ErrNotFound if the product
	// is unknown, hidden or of another stream; ErrConflict if the stream has ended or
	// the product's stock is below Quantity, or the stream has maxSales sales already
	// (ended ones count: ListSales lists them all), counted in the creation's
	// transaction or script like CreateProduct's bound. maxSales ≤ 0: no bound.
	CreateSale(ctx context.Context, s Sale, now time.Time, maxSales int) (Sale, Product, error)
	// GetSale returns the sale, or ErrNotFound.
	GetSale(ctx context.Context, id string) (Sale, error)
	// GetSales returns the sales of these ids, in the order given, leaving out the ids
	// that name none (one call for many: the unit gauges of /metrics).
	GetSales(ctx context.Context, ids []string) ([]Sale, error)
	// ListSales returns the stream's sales, oldest first (empty, not nil).
	ListSales(ctx context.Context, streamID string) ([]Sale, error)
	// StopSale ends a scheduled or active sale now: its Remaining units go back to the
	// product's stock (Returned += Remaining, Remaining = 0). Stopping an ended sale
	// changes nothing (changed = false). Returns the sale and its product after the
	// change. ErrNotFound if unknown.
	StopSale(ctx context.Context, id string, now time.Time) (s Sale, p Product, changed bool, err error)
	// AdvanceSales moves sales along by time: scheduled → active when StartsAt ≤ now,
	// scheduled or active → ended when EndsAt ≤ now (units returned as in StopSale).
	// It returns every sale whose status changed with its product after the change.
	// Idempotent; any node may call it at any time.
	AdvanceSales(ctx context.Context, now time.Time) ([]SaleUpdate, error)

	// HoldUnits takes req.Quantity units of a product (at its price) or of a sale (at
	// the sale price) out of Stock/Remaining at once and records the hold for the user
	// until req.ExpiresAt. Errors in this order of precedence: ErrNotFound (product or
	// sale unknown, or the product is hidden), ErrSaleNotActive (the sale is not active
	// at now: scheduled, ended, or outside StartsAt..EndsAt), ErrLimitExceeded (the
	// user's held + bought units of the sale plus req.Quantity exceed PerUserLimit),
	// ErrSoldOut (fewer units free than req.Quantity). Returns the hold and the changed
	// product or sale.
	HoldUnits(ctx context.Context, req HoldRequest, now time.Time) (Hold, Changes, error)
	// ListHolds returns the user's holds in the cart, oldest first (empty, not nil).
	// Holds whose ExpiresAt ≤ now (or already released by the sweeper) are listed with
	// Expired = true until the user's next checkout or their removal.
	ListHolds(ctx context.Context, userID string, now time.Time) ([]Hold, error)
	// RemoveHold removes the user's hold from the cart; a live hold's units go back at
	// once. ErrNotFound if unknown, another user's, or already ordered.
	RemoveHold(ctx context.Context, userID, holdID string, now time.Time) (Changes, error)
	// ReleaseExpiredHolds returns the units of at most max holds whose ExpiresAt ≤ now
	// (to the sale's Remaining, or to the product if the sale has ended, counting in
	// Returned; to the product's Stock for product holds). The holds stay in their
	// carts as expired. Idempotent: any node may sweep; a hold is released once. It
	// also forgets idempotency keys older than 24 h.
	ReleaseExpiredHolds(ctx context.Context, now time.Time, max int) (released int, ch Changes, err error)

	// Checkout places an order from the user's holds as API.md says, in one step:
	//   - req.IdempotencyKey (scoped to the user) seen in the last 24 h with the same
	//     req.Fingerprint → the same order, Created = false, nothing else done; with
	//     another fingerprint → ErrConflict. Concurrent calls with one key place one
	//     order; the others get it or ErrConflict.
	//   - With req.HoldIDs: exactly those holds. One unknown, another user's, already
	//     ordered (or of another stream than req.StreamID) → ErrNotFound; any expired →
	//     ErrHoldExpired and nothing is ordered; holds of several streams → ErrConflict.
	//   - Without: the user's holds (of req.StreamID if set). Expired ones are dropped
	//     and listed in Order.ExpiredHoldIDs; live ones of several streams and no
	//     StreamID → ErrConflict; only expired → ErrHoldExpired; none → ErrConflict.
	// Every attempt clears the expired holds it saw from the cart (releasing their units
	// if the sweeper has not yet), so Changes may be set even with an error. Ordered
	// units move from Held to Sold. The order gets req.OrderID and CreatedAt = now.
	Checkout(ctx context.Context, req CheckoutRequest, now time.Time) (CheckoutResult, error)
	// ListOrders returns the user's orders, oldest first (empty, not nil).
	ListOrders(ctx context.Context, userID string) ([]Order, error)
	// ListStreamOrders returns the stream's orders, oldest first (empty, not nil).
	ListStreamOrders(ctx context.Context, streamID string) ([]Order, error)

	// AppendAudit records an audit entry of a stream.
	AppendAudit(ctx context.Context, e AuditEntry) error
	// ListAudit returns the stream's audit entries, oldest first.
	ListAudit(ctx context.Context, streamID string) ([]AuditEntry, error)

	// Ping reports whether the backing store answers (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// HoldRequest asks HoldUnits for units. Exactly one of ProductID and SaleID is set.
type HoldRequest struct {
	ID        string // the new hold's id (a UUID chosen by the caller)
	UserID    string
	ProductID string
	SaleID    string
	Quantity  int
	ExpiresAt time.Time
}

// CheckoutRequest asks Checkout for an order.
type CheckoutRequest struct {
	OrderID        string // the new order's id (a UUID chosen by the caller)
	UserID         string
	StreamID       string   // optional
	HoldIDs        []string // optional; nil = the whole cart
	IdempotencyKey string
	Fingerprint    string // identifies the request body; same key + other body → ErrConflict
}

// CheckoutResult is the outcome of Checkout.
type CheckoutResult struct {
	Order   Order
	Created bool    // false when the idempotency key returned an earlier order
	Changes Changes // units moved (ordered or released expired holds)
	// CartCleared says the call also cleared every expired hold of the user's cart
	// (outside its hold_ids and stream too), so the caller need not look again. A
	// store may leave it false on any path; the Service then clears them itself.
	CartCleared bool
}

// Changes are the products and sales a call touched, as they are after the change
// (the values live events carry). Read only: the calls of one batch may share them.
type Changes struct {
	Products []Product
	Sales    []Sale
}

// ProductUnits is a product with the numbers of its invariant, as GetProductUnits
// reads them together: units put in = Stock + Held + Sold + InSales.
type ProductUnits struct {
	Product Product
	// PutIn is the units put into the product (its Stock at creation), if PutInKnown:
	// a product created by a livecart before 2026-12-05 has none kept.
	PutIn      int
	PutInKnown bool
	// InSales is Σ over the product's sales (Quantity − Returned): its units that went
	// into sales and did not come back (free, held or sold there).
	InSales int
}

// InvariantOK says whether PutIn = Stock + Held + Sold + InSales; known is false (and
// ok too) when the units put in are not known.
func (u ProductUnits) InvariantOK() (ok, known bool) {
	if !u.PutInKnown {
		return false, false
	}
	p := u.Product
	return u.PutIn == p.Stock+p.Held+p.Sold+u.InSales, true
}

// SaleUpdate is a sale whose status changed, with its product after the change.
type SaleUpdate struct {
	Sale    Sale
	Product Product
}

// IdempotencyTTL is how long Checkout remembers an idempotency key.
const IdempotencyTTL = 24 * time.Hour
