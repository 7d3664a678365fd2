package cart

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"time"
	"unicode/utf8"
)

// NewItem is the body of POST /api/cart/items: exactly one of ProductID and SaleID.
type NewItem struct {
	ProductID string `json:"product_id"`
	SaleID    string `json:"sale_id"`
	Quantity  *int   `json:"quantity"`
}

// Validate checks shapes and ranges (ErrBadRequest), then id syntax (ErrNotFound).
func (in NewItem) Validate() error {
	switch {
	case (in.ProductID == "") == (in.SaleID == ""):
		return badRequest("give exactly one of product_id and sale_id")
	case in.Quantity == nil:
		return badRequest("quantity is required")
	case *in.Quantity < 1 || *in.Quantity > 100:
		return badRequest("quantity must be 1..100")
	case in.SaleID != "":
		return checkID("sale", in.SaleID)
	}
	return checkID("product", in.ProductID)
}

// Cart is the body of GET /api/cart. TotalCents adds up the live holds' prices
// whatever their currency (as API.md says); Totals has one entry per currency, in the
// order the holds list them, so a cart holding products of streams of different
// currencies has a meaningful total.
type Cart struct {
	Items      []Hold          `json:"items"`
	TotalCents int64           `json:"total_cents"`
	Totals     []CurrencyTotal `json:"totals"`
}

// CurrencyTotal is what a cart's live holds of one currency cost.
type CurrencyTotal struct {
	Currency   string `json:"currency"`
	TotalCents int64  `json:"total_cents"`
}

// AddToCart holds units of a product or a sale for the user.
func (s *Service) AddToCart(ctx context.Context, userID string, in NewItem) (Hold, error) {
	if err := in.Validate(); err != nil {
		return Hold{}, err
	}
	now := s.now().UTC()
	ttl := s.cfg.HoldTTL
	if in.SaleID != "" {
		ttl = s.cfg.SaleHoldTTL
	}
	h, ch, err := s.store.HoldUnits(ctx, HoldRequest{ID: newID(), UserID: userID, ProductID: in.ProductID,
		SaleID: in.SaleID, Quantity: *in.Quantity, ExpiresAt: now.Add(ttl)}, now)
	if err != nil {
		return Hold{}, err
	}
	s.emitStock(ctx, ch)
	return h, nil
}

// Cart lists the user's holds (expired ones flagged, their units already back).
func (s *Service) Cart(ctx context.Context, userID string) (Cart, error) {
	// Release what has expired first, so an expired hold's units are back by the time
	// the cart says so (the background sweeper may be up to one interval behind).
	s.Sweep(ctx)
	holds, err := s.store.ListHolds(ctx, userID, s.now().UTC())
	if err != nil {
		return Cart{}, err
	}
	c := Cart{Items: holds, Totals: []CurrencyTotal{}}
	for _, h := range holds {
		if h.Expired {
			continue
		}
		cents := int64(h.Quantity) * h.UnitPriceCents
		c.TotalCents += cents
		i := slices.IndexFunc(c.Totals, func(t CurrencyTotal) bool { return t.Currency == h.Currency })
		if i < 0 {
			i = len(c.Totals)
			c.Totals = append(c.Totals, CurrencyTotal{Currency: h.Currency})
		}
		c.Totals[i].TotalCents += cents
	}
	return c, nil
}

// RemoveFromCart removes the user's hold; its units go back at once.
func (s *Service) RemoveFromCart(ctx context.Context, userID, holdID string) error {
	if err := checkID("hold", holdID); err != nil {
		return err
	}
	ch, err := s.store.RemoveHold(ctx, userID, holdID, s.now().UTC())
	if err != nil {
		return err
	}
	s.emitStock(ctx, ch)
	return nil
}

// CheckoutInput is the body of POST /api/checkout (an empty body means {}).
type CheckoutInput struct {
	StreamID string   `json:"stream_id"`
	HoldIDs  []string `json:"hold_ids"`
}

// fingerprint identifies the body for the idempotency check: the hex SHA-256 of the
// stream id, then, when hold_ids is given, a zero byte and the ids joined by commas.
// It runs on every checkout: the usual body (the whole cart: no stream, no hold_ids)
// has one value, hashed once; any other costs one allocation (the string).
func (in CheckoutInput) fingerprint() string {
	if in.StreamID == "" && in.HoldIDs == nil {
		return emptyCheckoutFingerprint
	}
	return in.hashFingerprint()
}

// emptyCheckoutFingerprint is the fingerprint of the empty body (as stored with every
// idempotency key taken by one): the SHA-256 of nothing.
var emptyCheckoutFingerprint = CheckoutInput{}.hashFingerprint()

// hashFingerprint computes fingerprint.
func (in CheckoutInput) hashFingerprint() string {
	var buf [128]byte
	b := append(buf[:0], in.StreamID...)
	if in.HoldIDs != nil {
		b = append(b, 0)
		for i, id := range in.HoldIDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, id...)
		}
	}
	sum := sha256.Sum256(b)
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// Validate checks the key (ErrBadRequest) and the ids (ErrNotFound when not UUIDs).
func (in CheckoutInput) Validate(key string) error {
	switch {
	case key == "":
		return badRequest("the Idempotency-Key header is required")
	case utf8.RuneCountInString(key) > 255:
		return badRequest("the Idempotency-Key header is longer than 255 characters")
	case in.HoldIDs != nil && len(in.HoldIDs) == 0:
		return badRequest("hold_ids is empty; leave it out to order the whole cart")
	case len(in.HoldIDs) > 1000:
		return badRequest("too many hold_ids")
	case in.StreamID != "":
		if err := checkID("stream", in.StreamID); err != nil {
			return err
		}
	}
	for _, id := range in.HoldIDs {
		if err := checkID("hold", id); err != nil {
			return err
		}
	}
	return nil
}

// Checkout places an order; created is false when the key returned an earlier order.
func (s *Service) Checkout(ctx context.Context, userID, key string, in CheckoutInput) (Order, bool, error) {
	if err := in.Validate(key); err != nil {
		return Order{}, false, err
	}
	now := s.now().UTC()
	res, err := s.store.Checkout(ctx, CheckoutRequest{OrderID: newID(), UserID: userID, StreamID: in.StreamID,
		HoldIDs: in.HoldIDs, IdempotencyKey: key, Fingerprint: in.fingerprint()}, now)
	s.emitStock(ctx, res.Changes)
	if !res.CartCleared && !errors.Is(err, ErrUnavailable) {
		s.clearExpired(ctx, userID, now)
	}
	if err != nil {
		return Order{}, false, err
	}
	if res.Order.ExpiredHoldIDs == nil {
		res.Order.ExpiredHoldIDs = []string{}
	}
	return res.Order, res.Created, nil
}

// clearExpired removes the expired holds a checkout left in the cart (those outside its
// hold_ids or stream) when the store did not say it cleared them (CartCleared): API.md
// lists an expired hold only until the next checkout. The store's Checkout already
// cleared the ones it saw; a hold ordered or removed meanwhile is simply not found.
func (s *Service) clearExpired(ctx context.Context, userID string, now time.Time) {
	holds, err := s.store.ListHolds(ctx, userID, now)
	if err != nil {
		return
	}
	for _, h := range holds {
		if !h.Expired {
			continue
		}
		if ch, err := s.store.RemoveHold(ctx, userID, h.ID, now); err == nil {
			s.emitStock(ctx, ch)
		}
	}
}

// ListOrders returns the user's orders, oldest first.
func (s *Service) ListOrders(ctx context.Context, userID string) ([]Order, error) {
	return s.store.ListOrders(ctx, userID)
}

// ListStreamOrders returns the stream's orders, oldest first.
func (s *Service) ListStreamOrders(ctx context.Context, streamID string) ([]Order, error) {
	return s.store.ListStreamOrders(ctx, streamID)
}

// Run advances sales and sweeps expired holds every SweepInterval until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.SweepInterval)
	defer tick.Stop()
	for {
		s.Sweep(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Sweep advances sales by time and releases expired holds once, emitting events.
func (s *Service) Sweep(ctx context.Context) {
	now := s.now().UTC()
	ups, err := s.store.AdvanceSales(ctx, now)
	switch {
	case err == nil:
		s.advanceLog.OK()
	case !errors.Is(err, context.Canceled):
		s.advanceLog.Fail(err)
	}
	for _, u := range ups {
		if u.Sale.Status == SaleEnded {
			s.emitSaleEnded(ctx, u.Sale, u.Product)
		} else {
			s.emit(ctx, u.Sale.StreamID, EventSale, SaleData{Sale: u.Sale})
		}
	}
	for ctx.Err() == nil {
		n, ch, err := s.store.ReleaseExpiredHolds(ctx, now, s.cfg.SweepBatch)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				s.releaseLog.Fail(err)
			}
			return
		}
		s.releaseLog.OK()
		s.emitStock(ctx, ch)
		if n < s.cfg.SweepBatch {
			return
		}
	}
}
