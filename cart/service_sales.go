package cart

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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

// UnmarshalJSON decodes the body strictly (unknown fields refused) and takes a quantity
// that is a positive integer too large for an int as the most units there can be:
// API.md bounds a sale's quantity only below, so more than the product's stock, however
// many, is CreateSale's 409 conflict, not a 400.
func (in *NewSale) UnmarshalJSON(b []byte) error {
	type fields NewSale // NewSale's fields without this method
	var body struct {
		*fields
		Quantity json.RawMessage `json:"quantity"`
	}
	body.fields = (*fields)(in)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return err
	}
	in.Quantity = nil
	if len(body.Quantity) == 0 || string(body.Quantity) == "null" {
		return nil
	}
	var q int
	if err := json.Unmarshal(body.Quantity, &q); err != nil {
		if !positiveIntegerLiteral(body.Quantity) {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				te.Field = "quantity" // decoded on its own: say which field it was
			}
			return fmt.Errorf("quantity: %w", err)
		}
		q = math.MaxInt
	}
	in.Quantity = &q
	return nil
}

// positiveIntegerLiteral: b is a JSON number with digits only (no sign, fraction or
// exponent) and not 0.
func positiveIntegerLiteral(b []byte) bool {
	if len(b) == 0 || b[0] < '1' || b[0] > '9' {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
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
	case *in.PriceCents < 0:
		return badRequest("price_cents must be ≥ 0")
	case *in.PriceCents > 1e12:
		return badRequest("price_cents is too large")
	case in.Quantity == nil:
		return badRequest("quantity is required")
	case *in.Quantity < 1:
		// No upper bound (API.md: quantity ≥ 1): more units than the product has in
		// stock, however many, is CreateSale's 409 conflict.
		return badRequest("quantity must be ≥ 1")
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
	c, err := change(ctx, s.log, func(ctx context.Context) (saleChange, error) {
		sale, p, err := s.store.CreateSale(ctx, Sale{ID: newID(), StreamID: streamID, ProductID: in.ProductID,
			PriceCents: *in.PriceCents, Quantity: *in.Quantity, PerUserLimit: limit, StartsAt: starts,
			EndsAt: starts.Add(time.Duration(*in.DurationS) * time.Second)}, now, s.cfg.MaxSales)
		if err != nil {
			return saleChange{}, err
		}
		s.audit(ctx, a, streamID, "sale_create", sale.ID, map[string]any{"product_id": sale.ProductID,
			"price_cents": sale.PriceCents, "quantity": sale.Quantity, "per_user_limit": sale.PerUserLimit,
			"starts_at": sale.StartsAt, "ends_at": sale.EndsAt})
		return saleChange{sale: sale, p: p, changed: true}, nil
	}, func(ctx context.Context, c saleChange) {
		s.emit(ctx, streamID, EventSale, SaleData{Sale: c.sale})
		s.emit(ctx, streamID, EventProduct, ProductData{Product: c.p})
	})
	if err != nil {
		return Sale{}, err
	}
	return c.sale, nil
}

// saleChange is what a sale's creation or stop did.
type saleChange struct {
	sale    Sale
	p       Product
	changed bool
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
	c, err := change(ctx, s.log, func(ctx context.Context) (saleChange, error) {
		sale, p, changed, err := s.store.StopSale(ctx, saleID, s.now().UTC())
		if err == nil && changed {
			s.audit(ctx, a, sale.StreamID, "sale_stop", sale.ID, map[string]any{"returned": sale.Returned, "sold": sale.Sold})
		}
		return saleChange{sale, p, changed}, err
	}, func(ctx context.Context, c saleChange) {
		if c.changed {
			s.emitSaleEnded(ctx, c.sale, c.p)
		}
	})
	return c.sale, err
}

func (s *Service) emitSaleEnded(ctx context.Context, sale Sale, p Product) {
	s.emit(ctx, sale.StreamID, EventSale, SaleData{Sale: sale})
	s.emit(ctx, sale.StreamID, EventStock, StockData{SaleID: sale.ID, ProductID: sale.ProductID, Remaining: sale.Remaining})
	s.emit(ctx, sale.StreamID, EventProduct, ProductData{Product: p})
}

// EndStream ends the stream in the store (with its scheduled and active sales),
// records the stream_end audit entry, emits the sale (ended) and product events, then
// calls told, with them out: the caller emits the "stream" event there (viewers get
// the sales first). As every change (see change), it goes on to the end when the
// caller stops waiting, told included.
func (s *Service) EndStream(ctx context.Context, a Actor, streamID string, told func(context.Context, Stream)) (Stream, error) {
	type ended struct {
		st       Stream
		sales    []Sale
		products map[string]Product
	}
	e, err := change(ctx, s.log, func(ctx context.Context) (ended, error) {
		st, sales, err := s.store.EndStream(ctx, streamID, s.now().UTC())
		if err != nil {
			return ended{st: st}, err
		}
		// Before the events: their wait may use up the caller's time.
		s.audit(ctx, a, streamID, "stream_end", streamID, nil)
		e := ended{st: st, sales: sales, products: map[string]Product{}}
		for _, sale := range sales {
			p, err := s.store.GetProduct(ctx, sale.ProductID)
			if err != nil { // the end is in: its sale events go out without it
				s.log.Warn("end stream: read product for its event", "stream", streamID, "product", sale.ProductID, "err", err)
				continue
			}
			e.products[p.ID] = p
		}
		return e, nil
	}, func(ctx context.Context, e ended) {
		for _, sale := range e.sales {
			if p, ok := e.products[sale.ProductID]; ok {
				s.emitSaleEnded(ctx, sale, p)
			} else {
				s.emit(ctx, sale.StreamID, EventSale, SaleData{Sale: sale})
				s.emit(ctx, sale.StreamID, EventStock, StockData{SaleID: sale.ID, ProductID: sale.ProductID, Remaining: sale.Remaining})
			}
		}
		if told != nil {
			told(ctx, e.st)
		}
	})
	return e.st, err
}
