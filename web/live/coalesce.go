package live

import (
	"context"
	"sync"
	"time"

	"github.com/livecart/livecart/cart"
)

// emitter publishes one stream's events in the order they were emitted, holding back
// stock updates that come faster than the coalesce interval.
type emitter struct {
	hub *Hub
	sid string

	mu       sync.Mutex               // guards the maps; held while publishing, so order holds
	pending  map[string]*pendingEvent // coalesce key → newest held-back event
	lastSent map[string]time.Time     // coalesce key → when one was last published
	products map[string]cart.Product  // last published product by id
}

type pendingEvent struct {
	ev    cart.Event
	timer *time.Timer
}

func (e *emitter) emit(ctx context.Context, ev cart.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.hub.cfg.Now()
	key := e.coalesceKey(ev)
	if key == "" {
		e.publishNow(ctx, ev)
		return
	}
	if p := e.pending[key]; p != nil {
		p.ev = ev // newest value wins; the timer publishes it
		return
	}
	wait := e.hub.cfg.CoalesceInterval - now.Sub(e.lastSent[key])
	if wait <= 0 {
		e.lastSent[key] = now
		e.publishNow(ctx, ev)
		return
	}
	p := &pendingEvent{ev: ev}
	p.timer = time.AfterFunc(wait, func() { e.flush(key) })
	e.pending[key] = p
}

// publishNow publishes ev and keeps the held-back events consistent with it.
func (e *emitter) publishNow(ctx context.Context, ev cart.Event) {
	switch d := ev.Data.(type) {
	case cart.SaleData:
		// A held-back stock value must not contradict the sale published before it.
		if p := e.pending["stock:"+d.Sale.ID]; p != nil {
			p.ev.Data = cart.StockData{SaleID: d.Sale.ID, ProductID: d.Sale.ProductID, Remaining: d.Sale.Remaining}
		}
	case cart.ProductData:
		// This event carries the newest product: a held-back one is superseded.
		if p := e.pending["product:"+d.Product.ID]; p != nil {
			p.timer.Stop()
			delete(e.pending, "product:"+d.Product.ID)
		}
		e.products[d.Product.ID] = d.Product
	}
	e.hub.publish(ctx, e.sid, ev.Type, ev.Data)
}

// coalesceKey names what ev updates when it may be coalesced, else "".
func (e *emitter) coalesceKey(ev cart.Event) string {
	switch d := ev.Data.(type) {
	case cart.StockData:
		if d.SaleID == "" {
			return "stock:product:" + d.ProductID
		}
		return "stock:" + d.SaleID
	case cart.ProductData:
		old, ok := e.products[d.Product.ID]
		if !ok {
			return ""
		}
		old.Stock, old.Held, old.Sold = d.Product.Stock, d.Product.Held, d.Product.Sold
		if old != d.Product {
			return "" // more than a stock change: publish at once
		}
		e.products[d.Product.ID] = d.Product
		return "product:" + d.Product.ID
	}
	return ""
}

// flush publishes the held-back event of key.
func (e *emitter) flush(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pending[key]
	if p == nil {
		return
	}
	delete(e.pending, key)
	e.lastSent[key] = e.hub.cfg.Now()
	e.hub.publish(context.Background(), e.sid, p.ev.Type, p.ev.Data)
}

// idle reports whether nothing is held back or recently sent; it forgets old sends.
func (e *emitter) idle(now time.Time, interval time.Duration) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, t := range e.lastSent {
		if now.Sub(t) > interval {
			delete(e.lastSent, k)
		}
	}
	return len(e.pending) == 0 && len(e.lastSent) == 0
}

func (e *emitter) stopTimers() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, p := range e.pending {
		p.timer.Stop()
		delete(e.pending, k)
	}
}
