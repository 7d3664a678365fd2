package cart

import (
	"context"
	"time"
)

// NewSale is the body of POST /api/streams/{sid}/sales.
type NewSale struct {
	ProductID    string `json:"product_id"`
	PriceCents   *int64 `json:"price_cents"`
	Quantity     *int   `json:"quantity"`
	PerUserLimit *int   `json:"per_user_limit"`
	DurationS    *int64 `json:"duration_s"`
	StartsInS    *int64 `json:"starts_in_s"`
}

const maxSaleSeconds = 30 * 24 * 3600

// Validate checks shapes and ranges (ErrBadRequest). The product id is checked by
// CreateSale (a malformed one names nothing: ErrNotFound).
func (in NewSale) Validate() error {
	switch {
	case in.ProductID == "":
		return badRequest("product_id is required")
	case in.PriceCents == nil:
		return badRequest("price_cents is required")
	case *in.PriceCents < 0 || *in.PriceCents > 1e12:
		return badRequest("price_cents must be ≥ 0")
	case in.Quantity == nil:
		return badRequest("quantity is required")
	case *in.Quantity < 1 || *in.Quantity > 1_000_000:
		return badRequest("quantity must be 1..1000000")
	case in.PerUserLimit != nil && (*in.PerUserLimit < 1 || *in.PerUserLimit > *in.Quantity):
		return badRequest("per_user_limit must be 1..quantity")
	case in.DurationS == nil:
		return badRequest("duration_s is required")
	case *in.DurationS < 1 || *in.DurationS > maxSaleSeconds:
		return badRequest("duration_s must be 1..%d", maxSaleSeconds)
	case in.StartsInS != nil && (*in.StartsInS < 0 || *in.StartsInS > maxSaleSeconds):
		return badRequest("starts_in_s must be 0..%d", maxSaleSeconds)
	}
	return nil
}

// CreateSale validates and creates a flash sale, taking its units from the product.
func (s *Service) CreateSale(ctx context.Context, a Actor, streamID string, in NewSale) (Sale, error) {
	if err := in.Validate(); err != nil {
		return Sale{}, err
	}
	if err := checkID("product", in.ProductID); err != nil {
		return Sale{}, err
	}
	now := s.now().UTC()
	limit := 1
	if in.PerUserLimit != nil {
		limit = *in.PerUserLimit
	}
	starts := now
	if in.StartsInS != nil {
		starts = now.Add(time.Duration(*in.StartsInS) * time.Second)
	}
	sale, p, err := s.store.CreateSale(ctx, Sale{ID: newID(), StreamID: streamID, ProductID: in.ProductID,
		PriceCents: *in.PriceCents, Quantity: *in.Quantity, PerUserLimit: limit, StartsAt: starts,
		EndsAt: starts.Add(time.Duration(*in.DurationS) * time.Second)}, now)
	if err != nil {
		return Sale{}, err
	}
	s.audit(ctx, a, streamID, "sale_create", sale.ID, map[string]any{"product_id": sale.ProductID,
		"price_cents": sale.PriceCents, "quantity": sale.Quantity, "per_user_limit": sale.PerUserLimit,
		"starts_at": sale.StartsAt, "ends_at": sale.EndsAt})
	s.emit(ctx, streamID, EventSale, SaleData{Sale: sale})
	s.emit(ctx, streamID, EventProduct, ProductData{Product: p})
	return sale, nil
}

// GetSale returns a sale (ErrNotFound for a malformed id).
func (s *Service) GetSale(ctx context.Context, id string) (Sale, error) {
	if err := checkID("sale", id); err != nil {
		return Sale{}, err
	}
	return s.store.GetSale(ctx, id)
}

// ListSales returns the stream's sales, oldest first.
func (s *Service) ListSales(ctx context.Context, streamID string) ([]Sale, error) {
	return s.store.ListSales(ctx, streamID)
}

// StopSale ends a sale now; stopping an ended sale returns it unchanged.
func (s *Service) StopSale(ctx context.Context, a Actor, saleID string) (Sale, error) {
	if err := checkID("sale", saleID); err != nil {
		return Sale{}, err
	}
	sale, p, changed, err := s.store.StopSale(ctx, saleID, s.now().UTC())
	if err != nil || !changed {
		return sale, err
	}
	s.audit(ctx, a, sale.StreamID, "sale_stop", sale.ID, map[string]any{"returned": sale.Returned, "sold": sale.Sold})
	s.emitSaleEnded(ctx, sale, p)
	return sale, nil
}

func (s *Service) emitSaleEnded(ctx context.Context, sale Sale, p Product) {
	s.emit(ctx, sale.StreamID, EventSale, SaleData{Sale: sale})
	s.emit(ctx, sale.StreamID, EventStock, StockData{SaleID: sale.ID, ProductID: sale.ProductID, Remaining: sale.Remaining})
	s.emit(ctx, sale.StreamID, EventProduct, ProductData{Product: p})
}

// EndStream ends the stream in the store (with its scheduled and active sales) and
// emits the sale (ended) and product events. The caller emits the "stream" event
// after it (viewers get the sales first) and records the stream_end audit entry.
func (s *Service) EndStream(ctx context.Context, streamID string) (Stream, error) {
	st, sales, err := s.store.EndStream(ctx, streamID, s.now().UTC())
	if err != nil {
		return st, err
	}
	for _, sale := range sales {
		p, err := s.store.GetProduct(ctx, sale.ProductID)
		if err != nil {
			return st, err
		}
		s.emitSaleEnded(ctx, sale, p)
	}
	return st, nil
}
