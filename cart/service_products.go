package cart

import (
	"context"
	"net/url"
	"strings"
)

// NewProduct is the body of POST /api/streams/{sid}/products.
type NewProduct struct {
	SKU         string `json:"sku"`
	Title       string `json:"title"`
	Description string `json:"description"`
	PriceCents  *int64 `json:"price_cents"`
	Currency    string `json:"currency"`
	ImageURL    string `json:"image_url"`
	Stock       *int   `json:"stock"`
}

// Validate checks shapes and ranges (ErrBadRequest).
func (in NewProduct) Validate() error {
	for _, f := range []struct {
		name, v             string
		required, multiline bool
		max                 int
	}{{"sku", in.SKU, true, false, 64}, {"title", in.Title, true, false, 200}, {"description", in.Description, false, true, 5000}, {"image_url", in.ImageURL, false, false, 2048}} {
		if err := checkText(f.name, f.v, f.required, f.max, f.multiline); err != nil {
			return err
		}
	}
	if in.ImageURL != "" && !webImageURL(in.ImageURL) {
		return badRequest("image_url must be an http or https URL (or a relative reference without a scheme)")
	}
	switch {
	case in.PriceCents == nil:
		return badRequest("price_cents is required")
	case *in.PriceCents < 0:
		return badRequest("price_cents must be ≥ 0")
	case *in.PriceCents > 1e12:
		return badRequest("price_cents is too large")
	case !currencyRE.MatchString(in.Currency):
		return badRequest("currency must be three capital letters (ISO 4217)")
	case in.Stock == nil:
		return badRequest("stock is required")
	case *in.Stock < 0 || *in.Stock > 1_000_000:
		return badRequest("stock must be 0..1000000")
	}
	return nil
}

// webImageURL tells whether s may be kept as a product's image: an http or https URL
// with a host (the scheme in any case), or a reference without a scheme ("/img/cap.png",
// "//cdn.example/cap.png": harmless; the pages load only absolute https images and show
// the title's initial for anything else), and no white space. A URL of another scheme
// (javascript:, data:, ftp:, an opaque "https:cap.png") is refused.
func webImageURL(s string) bool {
	if strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Opaque != "":
		return false
	case u.Scheme == "":
		return true
	default:
		return (u.Scheme == "http" || u.Scheme == "https") && u.Hostname() != ""
	}
}

// CreateProduct validates and stores a product of the stream.
func (s *Service) CreateProduct(ctx context.Context, a Actor, streamID string, in NewProduct) (Product, error) {
	if err := in.Validate(); err != nil {
		return Product{}, err
	}
	return change(ctx, s.log, func(ctx context.Context) (Product, error) {
		p, err := s.store.CreateProduct(ctx, Product{ID: newID(), StreamID: streamID, SKU: in.SKU, Title: in.Title,
			Description: in.Description, PriceCents: *in.PriceCents, Currency: in.Currency, ImageURL: in.ImageURL, Stock: *in.Stock}, s.cfg.MaxProducts)
		if err != nil {
			return Product{}, err
		}
		s.audit(ctx, a, streamID, "product_create", p.ID, map[string]any{"sku": p.SKU, "price_cents": p.PriceCents, "stock": p.Stock})
		return p, nil
	}, func(ctx context.Context, p Product) {
		s.emit(ctx, streamID, EventProduct, ProductData{Product: p})
	})
}

// GetProduct returns a product (ErrNotFound for a malformed id).
func (s *Service) GetProduct(ctx context.Context, id string) (Product, error) {
	if err := checkID("product", id); err != nil {
		return Product{}, err
	}
	return s.store.GetProduct(ctx, id)
}

// ListProducts lists the stream's products; hidden ones only when withHidden.
func (s *Service) ListProducts(ctx context.Context, streamID string, withHidden bool) ([]Product, error) {
	all, err := s.store.ListProducts(ctx, streamID)
	if err != nil || withHidden {
		return all, err
	}
	out := []Product{}
	for _, p := range all {
		if !p.Hidden {
			out = append(out, p)
		}
	}
	return out, nil
}

// SetHidden hides or unhides a product: emits product, then unpin if it was pinned.
func (s *Service) SetHidden(ctx context.Context, a Actor, productID string, hidden bool) (Product, error) {
	type hide struct {
		p                 Product
		changed, unpinned bool
	}
	h, err := change(ctx, s.log, func(ctx context.Context) (hide, error) {
		p, changed, unpinned, err := s.store.SetProductHidden(ctx, productID, hidden)
		if err != nil || !changed {
			return hide{p: p}, err
		}
		action := "unhide"
		if hidden {
			action = "hide"
		}
		s.audit(ctx, a, p.StreamID, action, p.ID, map[string]any{"unpinned": unpinned})
		return hide{p, true, unpinned}, nil
	}, func(ctx context.Context, h hide) {
		if !h.changed {
			return
		}
		s.emit(ctx, h.p.StreamID, EventProduct, ProductData{Product: h.p, Toggled: true})
		if h.unpinned {
			s.emit(ctx, h.p.StreamID, EventUnpin, UnpinData{ProductID: h.p.ID})
		}
	})
	return h.p, err
}

// Pin pins a product of the stream (ErrConflict if hidden or too many pinned).
func (s *Service) Pin(ctx context.Context, a Actor, streamID, productID string) ([]Product, error) {
	if err := checkID("product", productID); err != nil {
		return nil, err
	}
	pins, err := change(ctx, s.log, func(ctx context.Context) (pinChange, error) {
		pinned, changed, err := s.store.PinProduct(ctx, streamID, productID, s.cfg.MaxPins)
		if err == nil && changed {
			s.audit(ctx, a, streamID, "pin", productID, nil)
		}
		return pinChange{pinned, changed}, err
	}, func(ctx context.Context, c pinChange) {
		if c.changed {
			s.emit(ctx, streamID, EventPin, PinData{Product: c.pinned[len(c.pinned)-1]})
		}
	})
	return pins.pinned, err
}

// pinChange is what a pin or an unpin did.
type pinChange struct {
	pinned  []Product
	changed bool
}

// Unpin unpins a product of the stream.
func (s *Service) Unpin(ctx context.Context, a Actor, streamID, productID string) ([]Product, error) {
	if err := checkID("product", productID); err != nil {
		return nil, err
	}
	pins, err := change(ctx, s.log, func(ctx context.Context) (pinChange, error) {
		pinned, changed, err := s.store.UnpinProduct(ctx, streamID, productID)
		if err == nil && changed {
			s.audit(ctx, a, streamID, "unpin", productID, nil)
		}
		return pinChange{pinned, changed}, err
	}, func(ctx context.Context, c pinChange) {
		if c.changed {
			s.emit(ctx, streamID, EventUnpin, UnpinData{ProductID: productID})
		}
	})
	return pins.pinned, err
}

// ListPinned returns the stream's pinned products in pin order.
func (s *Service) ListPinned(ctx context.Context, streamID string) ([]Product, error) {
	return s.store.ListPinned(ctx, streamID)
}
