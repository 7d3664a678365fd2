package cart

import (
	"sync"
	"time"
)

// RecentMax is how many sales, and how many products, a Service remembers as recently
// changed (RecentUnits).
const RecentMax = 256

// Touched is a sale or product a Service changed (or announced) lately.
type Touched struct {
	ID       string
	StreamID string
	At       time.Time // the last change seen
}

// recentSet is a bounded set of ids, the least recently touched dropped first. The
// bound keeps its upkeep per touch to a map write (the scan for the oldest runs only
// when a new id arrives into a full set).
type recentSet struct {
	mu  sync.Mutex
	ids map[string]Touched // guarded by mu
}

func (r *recentSet) touch(id, streamID string, now time.Time) {
	if id == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = make(map[string]Touched)
	}
	if _, ok := r.ids[id]; !ok && len(r.ids) >= RecentMax {
		var oldest string
		var oldestAt time.Time
		for k, t := range r.ids {
			if oldest == "" || t.At.Before(oldestAt) {
				oldest, oldestAt = k, t.At
			}
		}
		delete(r.ids, oldest)
	}
	r.ids[id] = Touched{ID: id, StreamID: streamID, At: now}
}

func (r *recentSet) list() []Touched {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Touched, 0, len(r.ids))
	for _, t := range r.ids {
		out = append(out, t)
	}
	return out
}

// forget drops id unless it was touched after at.
func (r *recentSet) forget(id string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.ids[id]; ok && !t.At.After(at) {
		delete(r.ids, id)
	}
}

// recentUnits are the sales and products whose units a Service changed lately, for
// the unit gauges of /metrics (which read their values from the store).
type recentUnits struct {
	sales, products recentSet
}

// note records the sale or product an event names.
func (r *recentUnits) note(streamID string, data any, now time.Time) {
	switch d := data.(type) {
	case StockData:
		if d.SaleID != "" {
			r.sales.touch(d.SaleID, streamID, now)
		} else {
			r.products.touch(d.ProductID, streamID, now)
		}
	case SaleData:
		r.sales.touch(d.Sale.ID, streamID, now)
	case ProductData:
		r.products.touch(d.Product.ID, streamID, now)
	}
}

// RecentUnits returns the sales and products (at most RecentMax of each) this Service
// changed lately, in no particular order. Their numbers are the store's business: other
// nodes change them too.
func (s *Service) RecentUnits() (sales, products []Touched) {
	return s.recent.sales.list(), s.recent.products.list()
}

// ForgetSale drops a sale from RecentUnits unless it changed after at (an ended sale).
func (s *Service) ForgetSale(id string, at time.Time) { s.recent.sales.forget(id, at) }

// ForgetProduct drops a product from RecentUnits unless it changed after at.
func (s *Service) ForgetProduct(id string, at time.Time) { s.recent.products.forget(id, at) }

// Now is the Service's clock.
func (s *Service) Now() time.Time { return s.now() }
