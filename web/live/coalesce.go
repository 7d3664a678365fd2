package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/livecart/livecart/cart"
)

// emitter publishes one stream's events in the order they were emitted, holding back
// stock updates that come faster than the coalesce interval.
type emitter struct {
	hub   *Hub
	sid   string
	users int // callers holding it (Hub.emitter until Hub.release); guarded by hub.mu

	mu       sync.Mutex               // guards the maps; held while publishing, so order holds
	pending  map[string]*pendingEvent // coalesce key → newest held-back event
	lastSent map[string]time.Time     // coalesce key → when one was last published
	products map[string]cart.Product  // last published product by id
	gated    map[string]*gatedStock   // stock key → turns at the bus's StockGate
	// endedSales are the sales whose ended sale event is out: their stock is final.
	endedSales map[string]bool
	// lastSaleKey is the coalesce key of the sale lastSaleID (coalesceKey's last;
	// guarded by mu).
	lastSaleID, lastSaleKey string

	qmu        sync.Mutex    // guards queue, queueBytes, reserved and draining; never taken while mu is held
	queue      []queuedEvent // events waiting for mu, in the order they were emitted
	queueBytes int           // the queued events' sizes (eventSize)
	// reserved, reservedBytes: places taken in the queue for events to come (Reserve),
	// counted in its bounds as queued ones.
	reserved, reservedBytes int
	draining                bool // drain is running
	// salesRescued: a sale event of the stream was left to the node-death comparison
	// (overflowLocked); the stream's end, which closes the viewers, is left to it too,
	// so that it follows the sale's (rescueStreamEnd publishes the sales' first).
	salesRescued bool

	rmu sync.Mutex // guards rescuing and stockWaiting; never held while taking another lock
	// rescuing: the products whose rescue (rescueProducts) is under way, each with the
	// stamp of the last comparison that found it; a comparison finding one again
	// meanwhile leaves it to that rescue, which takes the stamp when it reads the store.
	rescuing map[string]int64
	// stockWaiting holds the stock keys whose rescue waits in the background for mu
	// (rescueStock), with its count: one goroutine a key however often the sweep
	// finds it meanwhile.
	stockWaiting map[string]bool
}

// queuedEvent is an event handed to the stream's drain (see Hub.Emit).
type queuedEvent struct {
	ctx  context.Context // without cancel: the caller may stop waiting, not the event
	ev   cart.Event
	size int           // eventSize(ev)
	done chan struct{} // closed once it was emitted (or gave way, see overflow)
}

// gatedStock is a stock key coalesced across nodes (the bus is a StockGate): changes
// here are counted at the gate and a turn publishes the store's value. Guarded by
// emitter.mu.
type gatedStock struct {
	ev      cart.Event // the newest change here (ids; the value if the store cannot be read)
	dirty   bool       // changes not yet counted at the gate
	need    int64      // the version whose publication covers our counted changes; 0: none
	running bool       // runGate is on it
	// rescue: the key is overdue (its changes were counted by a node that died):
	// publish a value covering every change counted so far, on any node.
	rescue bool
}

type pendingEvent struct {
	ev    cart.Event
	timer *time.Timer
}

func (e *emitter) emit(ctx context.Context, ev cart.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.emitLocked(ctx, ev)
}

// enqueue hands ev to the stream's drain, which emits the stream's events one at a
// time in the order they came, and returns a channel closed once ev is out; nil when
// it was emitted here at once (a stock change for the gate: no store or bus call) or
// when the queue is full and ev gave way (overflow). ErrBacklog: the queue is full and
// ev is not the stream's state (announce, chat_delete, mute): not queued.
func (e *emitter) enqueue(ctx context.Context, ev cart.Event) (<-chan struct{}, error) {
	e.qmu.Lock()
	if !e.draining && e.hub.stockGate != nil && ev.Type == cart.EventStock && e.mu.TryLock() {
		if d, ok := ev.Data.(cart.StockData); ok && (d.SaleID == "" || !e.endedSales[d.SaleID]) {
			e.qmu.Unlock()
			e.emitLocked(ctx, ev)
			e.mu.Unlock()
			return nil, nil
		}
		e.mu.Unlock()
	}
	if e.salesRescued && isStreamEnd(ev) {
		e.hub.metrics.emitOverflow.WithLabelValues("rescued").Inc()
		e.qmu.Unlock()
		return nil, nil
	}
	q := queuedEvent{ctx: context.WithoutCancel(ctx), ev: ev, size: eventSize(ev)}
	if e.fullLocked(q.size, isState(ev)) {
		done, err := e.overflowLocked(q)
		// An event queued over the bound needs the drain if none runs.
		start := e.startDrainLocked()
		e.qmu.Unlock()
		if start {
			e.runDrain()
		}
		return done, err
	}
	return e.queueLocked(q), nil
}

// startDrainLocked reports whether the caller must start the drain (runDrain): events
// are queued and it is not running. Called with qmu held; it marks the drain running.
func (e *emitter) startDrainLocked() bool {
	if e.draining || len(e.queue) == 0 {
		return false
	}
	e.draining = true
	return true
}

// runDrain runs drain in the background, or here when the hub is closing.
func (e *emitter) runDrain() {
	if !e.hub.goBackground(e.drain) {
		e.drain() // the hub is closing: no background left, emit here
	}
}

// fullLocked reports whether an event of size finds the queue full: EmitQueueMax
// events or EmitQueueBytes; one event is queued whatever its size. Called with qmu
// held. The places reserved count as queued, except for a state event (state): the
// moderation actions under way (as many as EmitQueueMax, each waiting for its
// store) must not send the stream's state the slow way (the node-death comparison,
// about two seconds late) while its events go out at once. So the queue holds at most
// twice its bounds: its state events, and the events of the places reserved.
func (e *emitter) fullLocked(size int, state bool) bool {
	n, bytes := len(e.queue), e.queueBytes+size
	if !state {
		n, bytes = n+e.reserved, bytes+e.reservedBytes
	}
	return n > 0 && (n >= e.hub.cfg.EmitQueueMax || bytes > e.hub.cfg.EmitQueueBytes)
}

// queueLocked queues q, starting the drain if it is not running, and returns the
// channel closed once q is out; called with qmu held, which it unlocks.
func (e *emitter) queueLocked(q queuedEvent) <-chan struct{} {
	q.done = make(chan struct{})
	e.pushLocked(q)
	start := e.startDrainLocked()
	e.qmu.Unlock()
	if start {
		e.runDrain()
	}
	return q.done
}

// reserve takes a place of size in the queue for an event to come (Hub.Reserve):
// ErrBacklog when the queue is full, as enqueue refuses an event that is not the
// stream's state.
func (e *emitter) reserve(size int) error {
	e.qmu.Lock()
	defer e.qmu.Unlock()
	if e.fullLocked(size, false) {
		e.hub.metrics.emitOverflow.WithLabelValues("refused").Inc()
		return ErrBacklog
	}
	e.reserved++
	e.reservedBytes += size
	return nil
}

// unreserve gives a place taken by reserve back.
func (e *emitter) unreserve(size int) {
	e.qmu.Lock()
	e.reserved--
	e.reservedBytes -= size
	e.qmu.Unlock()
}

// enqueueReserved queues ev in the place reserve took for it (of size): never refused.
func (e *emitter) enqueueReserved(ctx context.Context, ev cart.Event, size int) <-chan struct{} {
	e.qmu.Lock()
	e.reserved--
	e.reservedBytes -= size
	return e.queueLocked(queuedEvent{ctx: context.WithoutCancel(ctx), ev: ev, size: size})
}

// pushLocked appends q to the queue; called with qmu held.
func (e *emitter) pushLocked(q queuedEvent) {
	e.queue = append(e.queue, q)
	e.queueBytes += q.size
}

// removeLocked takes the queued event i out; called with qmu held.
func (e *emitter) removeLocked(i int) queuedEvent {
	q := e.queue[i]
	if i == 0 {
		e.queue[0] = queuedEvent{}
		e.queue = e.queue[1:]
	} else {
		copy(e.queue[i:], e.queue[i+1:])
		e.queue[len(e.queue)-1] = queuedEvent{}
		e.queue = e.queue[:len(e.queue)-1]
	}
	e.queueBytes -= q.size
	return q
}

// overflowLocked places q when the queue is full (EmitQueueMax events or
// EmitQueueBytes, places reserved counted); called with qmu held. The queue may be
// empty (all its places reserved): the caller starts the drain for an event queued.
// The queue only holds events not yet out, so what may give way is what can be had
// again from the store:
//   - a state event (stock, product, pin or unpin, sale, stream, media) supersedes the
//     queued one of the same sale, product or stream (sameState): the newer replaces it, at
//     the tail, and both callers wait for it. A sale or stream that ended stays ended,
//     a hide's or unhide's product event stays one (mergeState).
//   - else, with the node-death comparison on (the bus is a StockGate, Config.Stock
//     set), a stock, sale, product, pin or unpin event, or a stream's end, is dropped:
//     its value is in the store and not recorded as delivered, so the comparison
//     publishes the store's value within about two seconds of the bus answering
//     (rescueStaleStock; a product's fields are compared as "product:<id>",
//     productValue). A stream's other change (live, idle) or media mute takes the
//     place of the oldest queued event of those kinds. After a sale's event, the stream's end goes
//     the same way (rescuedLocked).
//   - a stream or media event that finds nothing to take the place of is queued over
//     the bound: one of each at most, as each supersedes the one queued before.
//   - without the comparison (no StockGate or no Config.Stock: never so in the
//     binary, whose Redis bus always has its store), a state event that finds nothing
//     to take the place of is dropped, logged and counted (the viewers get it with
//     their next snapshot).
//   - any other event (announce, chat_delete, mute) is refused with ErrBacklog: its
//     request is answered unavailable and may be sent again, nothing done (Reserve).
func (e *emitter) overflowLocked(q queuedEvent) (<-chan struct{}, error) {
	m := e.hub.metrics.emitOverflow
	if !isState(q.ev) {
		m.WithLabelValues("refused").Inc()
		return nil, ErrBacklog
	}
	for i := len(e.queue) - 1; i >= 0; i-- {
		if sameState(e.queue[i].ev, q.ev) {
			old := e.removeLocked(i)
			q.ev, q.done = mergeState(old.ev, q.ev), old.done
			q.size = eventSize(q.ev)
			e.pushLocked(q)
			m.WithLabelValues("coalesced").Inc()
			return q.done, nil
		}
	}
	rescued := e.hub.stockGate != nil
	if rescued && rescuable(q.ev) {
		m.WithLabelValues("rescued").Inc()
		e.rescuedLocked(q.ev)
		return nil, nil
	}
	if rescued {
		for i, old := range e.queue {
			if rescuable(old.ev) {
				close(e.removeLocked(i).done)
				m.WithLabelValues("rescued").Inc()
				e.rescuedLocked(old.ev)
				q.done = make(chan struct{})
				e.pushLocked(q)
				return q.done, nil
			}
		}
	}
	if overBound(q.ev) {
		// None of its kind queued (sameState): over the bound by this one at most.
		m.WithLabelValues("over").Inc()
		q.done = make(chan struct{})
		e.pushLocked(q)
		return q.done, nil
	}
	m.WithLabelValues("lost").Inc()
	e.hub.cfg.Logger.Error("live: emit queue full; event dropped (viewers get it with their next snapshot)",
		"stream", e.sid, "type", q.ev.Type, "queued", len(e.queue), "bytes", e.queueBytes)
	return nil, nil
}

// rescuedLocked notes that ev was left to the node-death comparison; called with qmu
// held. After a sale's event, the stream's end is left to it too (a queued one taken
// out, a later one not queued: enqueue): the comparison publishes the sales' events
// before the end that closes the viewers (rescueStreamEnd), which the queue would send
// first (API.md: a stream's viewers get the sale (ended) events, then the stream's).
func (e *emitter) rescuedLocked(ev cart.Event) {
	if _, ok := ev.Data.(cart.SaleData); !ok {
		return
	}
	e.salesRescued = true
	for i := len(e.queue) - 1; i >= 0; i-- {
		if isStreamEnd(e.queue[i].ev) {
			close(e.removeLocked(i).done)
			e.hub.metrics.emitOverflow.WithLabelValues("rescued").Inc()
		}
	}
}

// isStreamEnd reports whether ev is the stream's end.
func isStreamEnd(ev cart.Event) bool {
	d, ok := ev.Data.(cart.StreamData)
	return ok && d.Ended
}

// ErrBacklog: the stream's events wait for the bus (Redis slow or down) and its queue
// is full; an event that is not the stream's state is refused.
var ErrBacklog = fmt.Errorf("live: the stream's events wait for the bus: %w", cart.ErrUnavailable)

// isState reports whether ev carries state the store holds (a later event of the
// same sale, product or stream carries it whole): the stream's media mute too.
func isState(ev cart.Event) bool {
	switch ev.Data.(type) {
	case cart.StockData, cart.ProductData, cart.PinData, cart.UnpinData, cart.SaleData, cart.StreamData, MediaState:
		return true
	}
	return false
}

// overBound reports whether ev, finding the queue full with nothing to take the
// place of, is queued over the bound (overflowLocked): a stream's change (live, idle)
// or its media mute, which the node-death comparison does not publish. Each
// supersedes the one of its kind queued before, so there is one of each at most.
func overBound(ev cart.Event) bool {
	switch ev.Data.(type) {
	case cart.StreamData, MediaState:
		return true
	}
	return false
}

// rescuable reports whether the node-death comparison publishes ev's value from the
// store when it was never delivered: a stock value, a sale's status, a product, a pin
// state, a stream's end.
func rescuable(ev cart.Event) bool {
	switch d := ev.Data.(type) {
	case cart.StockData, cart.ProductData, cart.PinData, cart.UnpinData, cart.SaleData:
		return true
	case cart.StreamData:
		return d.Ended
	}
	return false
}

// sameState reports whether a and b carry the same state: a stock value of one sale
// (or product), one product, one product's pin, one sale, the stream, its media mute.
func sameState(a, b cart.Event) bool {
	switch x := a.Data.(type) {
	case cart.StockData:
		y, ok := b.Data.(cart.StockData)
		return ok && x.SaleID == y.SaleID && (x.SaleID != "" || x.ProductID == y.ProductID)
	case cart.ProductData:
		y, ok := b.Data.(cart.ProductData)
		return ok && x.Product.ID == y.Product.ID
	case cart.PinData:
		id, ok := pinOf(b)
		return ok && id == x.Product.ID
	case cart.UnpinData:
		id, ok := pinOf(b)
		return ok && id == x.ProductID
	case cart.SaleData:
		y, ok := b.Data.(cart.SaleData)
		return ok && x.Sale.ID == y.Sale.ID
	case cart.StreamData:
		_, ok := b.Data.(cart.StreamData)
		return ok
	case MediaState:
		_, ok := b.Data.(MediaState)
		return ok
	}
	return false
}

// pinOf is the product a pin or unpin event is of; false for other events.
func pinOf(ev cart.Event) (string, bool) {
	switch d := ev.Data.(type) {
	case cart.PinData:
		return d.Product.ID, true
	case cart.UnpinData:
		return d.ProductID, true
	}
	return "", false
}

// mergeState is the event that stands for old and newer (sameState): newer, except
// that an ended sale or stream never goes back (a late start read before the end) and
// a hide's or unhide's product event stays the toggle (the one event of a hidden
// product its viewers get).
func mergeState(old, newer cart.Event) cart.Event {
	switch o := old.Data.(type) {
	case cart.SaleData:
		if n := newer.Data.(cart.SaleData); o.Sale.Status == cart.SaleEnded && n.Sale.Status != cart.SaleEnded {
			return old
		}
	case cart.StreamData:
		if n := newer.Data.(cart.StreamData); o.Ended && !n.Ended {
			return old
		}
	case cart.ProductData:
		if o.Toggled {
			n := newer.Data.(cart.ProductData)
			n.Toggled = true
			newer.Data = n
		}
	}
	return newer
}

// eventSize is what ev takes in the queue, about: its JSON and the queue's overhead.
// A stock event (every hold and checkout makes one) is sized from its fields, never
// encoded here: its JSON is at most its ids (UUIDs: nothing to escape), the keys and
// an int's 20 characters.
func eventSize(ev cart.Event) int {
	const overhead = 128
	if d, ok := ev.Data.(cart.StockData); ok {
		return overhead + len(ev.Type) + len(`{"sale_id":"","product_id":"","remaining":}`) +
			len(d.SaleID) + len(d.ProductID) + 20
	}
	b, _ := json.Marshal(ev.Data)
	return overhead + len(ev.Type) + len(b)
}

// drain emits the queued events in order and ends when none is left.
func (e *emitter) drain() {
	for {
		e.qmu.Lock()
		if len(e.queue) == 0 {
			e.draining = false
			e.qmu.Unlock()
			return
		}
		q := e.removeLocked(0)
		e.qmu.Unlock()
		e.emit(q.ctx, q.ev)
		close(q.done)
	}
}

// emitLocked emits ev; called with e.mu held.
func (e *emitter) emitLocked(ctx context.Context, ev cart.Event) {
	now := e.hub.cfg.Now()
	key := e.coalesceKey(ev)
	if key == "" {
		e.publishNow(ctx, ev)
		return
	}
	if d, ok := ev.Data.(cart.StockData); ok && d.SaleID != "" && e.endedSales[d.SaleID] {
		e.publishFinalStock(ctx, key, ev)
		return
	}
	if e.hub.stockGate != nil && ev.Type == cart.EventStock {
		e.gateStock(key, ev)
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
		if d.Sale.Status == cart.SaleEnded {
			e.endedSales[d.Sale.ID] = true
		} else if e.endedSales[d.Sale.ID] {
			return // read before the sale ended (a late start): it never goes back
		}
		// A held-back stock value must not contradict the sale published before it.
		if p := e.pending["stock:"+d.Sale.ID]; p != nil {
			p.ev.Data = cart.StockData{SaleID: d.Sale.ID, ProductID: d.Sale.ProductID, Remaining: d.Sale.Remaining}
		}
	case cart.ProductData:
		e.supersedeProduct(d.Product)
	}
	e.publishLocal(ctx, ev)
}

// supersedeProduct notes that p, the newest product, goes out: a held-back event of
// it is superseded. Called with e.mu held.
func (e *emitter) supersedeProduct(p cart.Product) {
	if pe := e.pending["product:"+p.ID]; pe != nil {
		pe.timer.Stop()
		delete(e.pending, "product:"+p.ID)
	}
	e.products[p.ID] = p
}

// coalesceKey names what ev updates when it may be coalesced, else "".
func (e *emitter) coalesceKey(ev cart.Event) string {
	switch d := ev.Data.(type) {
	case cart.StockData:
		if d.SaleID == "" {
			return "stock:product:" + d.ProductID
		}
		if d.SaleID != e.lastSaleID {
			// Every hold and checkout of a sale names it: build its key once.
			e.lastSaleID, e.lastSaleKey = d.SaleID, "stock:"+d.SaleID
		}
		return e.lastSaleKey
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
	e.publishLocal(context.Background(), p.ev)
}

// idle reports whether nothing is held back or recently sent; it forgets old sends.
func (e *emitter) idle(now time.Time, interval time.Duration) bool {
	e.qmu.Lock()
	draining := e.draining
	e.qmu.Unlock()
	if draining || !e.mu.TryLock() {
		// Busy: a publication (held-back values going out, a rescue) holds mu, maybe
		// for as long as Redis does not answer; forgetIdle, which holds the hub's lock,
		// must not wait for it (every stream's emits would).
		return false
	}
	defer e.mu.Unlock()
	for k, t := range e.lastSent {
		if now.Sub(t) > interval {
			delete(e.lastSent, k)
		}
	}
	for k, st := range e.gated {
		if !st.running {
			delete(e.gated, k)
		}
	}
	return len(e.pending) == 0 && len(e.lastSent) == 0 && len(e.gated) == 0
}

// publishHeld publishes the events held back for their interval now and stops their
// timers: the hub is closing, and viewers on other nodes must still get the newest
// values. A timer that has fired meanwhile finds nothing left to publish.
func (e *emitter) publishHeld() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, p := range e.pending {
		p.timer.Stop()
		delete(e.pending, k)
		e.publishLocal(context.Background(), p.ev)
	}
}

// gateStock notes a stock change of key; runGate gets it published across nodes.
// Called with e.mu held.
func (e *emitter) gateStock(key string, ev cart.Event) {
	st := e.gated[key]
	if st == nil {
		st = &gatedStock{}
		e.gated[key] = st
	}
	st.ev, st.dirty = ev, true
	if st.running {
		return
	}
	st.running = e.hub.goBackground(func() { e.runGate(key, st) })
}

// rescueStock publishes key's value for the changes another node counted and did not
// get published (it died): a value read now, through the gate's turns. With count, the
// turn counts a change first (one nobody counted: its node died between the store's
// commit and the gate, or it was a held-back event lost with its node), so that the
// value read now goes out even though every counted change was published. Key is a
// coalesce key of a stock event ("stock:<sale id>" or "stock:product:<product id>").
//
// The sweep (every stream's rescues, one goroutine) calls it: when mu is held (an event
// of the stream tried for as long as Redis does not answer it) the rescue waits for
// it in the background instead.
func (e *emitter) rescueStock(key string, count bool) {
	if !e.mu.TryLock() {
		e.rmu.Lock()
		c, waiting := e.stockWaiting[key]
		if e.stockWaiting == nil {
			e.stockWaiting = map[string]bool{}
		}
		e.stockWaiting[key] = c || count
		e.rmu.Unlock()
		if waiting {
			return
		}
		take := func() bool {
			e.rmu.Lock()
			defer e.rmu.Unlock()
			c := e.stockWaiting[key]
			delete(e.stockWaiting, key)
			return c
		}
		if !e.goHeld(func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.rescueStockLocked(key, take())
		}) {
			take() // the hub is closing
		}
		return
	}
	defer e.mu.Unlock()
	e.rescueStockLocked(key, count)
}

// rescueStockLocked is rescueStock with mu held.
func (e *emitter) rescueStockLocked(key string, count bool) {
	st := e.gated[key]
	if st == nil {
		d := cart.StockData{}
		if pid, ok := strings.CutPrefix(key, "stock:product:"); ok {
			d.ProductID = pid
		} else if sale, ok := strings.CutPrefix(key, "stock:"); ok {
			d.SaleID = sale
		} else {
			return
		}
		st = &gatedStock{ev: cart.Event{StreamID: e.sid, Type: cart.EventStock, Data: d}}
		e.gated[key] = st
	}
	if count {
		st.dirty = true
	} else {
		st.rescue = true
	}
	if st.running {
		return
	}
	st.running = e.hub.goBackground(func() { e.runGate(key, st) })
}

// goHeld runs f in the background holding e (as Hub.emitter does) until f returns: a
// rescue of the node-death comparison publishes in order with the stream's events
// under e.mu, so the idle sweep must neither drop e meanwhile (the stream's next
// events would go through a second emitter, at once with the rescue) nor wait for
// e.mu with the hub's lock held (forgetIdle: every stream's emits would wait for the
// rescue's store reads). It reports whether f runs (false: the hub is closing).
func (e *emitter) goHeld(f func()) bool {
	h := e.hub
	h.mu.Lock()
	e.users++
	h.mu.Unlock()
	if !h.goBackground(func() {
		defer h.release(e)
		f()
	}) {
		h.release(e)
		return false
	}
	return true
}

// rescueSale publishes the store's sale of saleID: a sale event (started, stopped,
// ended) that the node which made the change never published (it died). It is
// dropped if a sale event as far on went out meanwhile (PublishSeen onlyNewer).
func (e *emitter) rescueSale(saleID string) {
	e.goHeld(func() {
		ctx, cancel := context.WithTimeout(e.hub.backgroundCtx, 5*time.Second)
		defer cancel()
		e.publishRescuedSale(ctx, saleID)
	})
}

// publishRescuedSale reads and publishes the store's sale of saleID (rescueSale).
func (e *emitter) publishRescuedSale(ctx context.Context, saleID string) {
	sale, err := e.hub.cfg.Stock.GetSale(ctx, saleID)
	if err != nil {
		e.hub.cfg.Logger.Warn("live: rescue sale event", "stream", e.sid, "sale", saleID, "err", err)
		return
	}
	sp, ok := e.hub.cfg.Bus.(seenPublisher)
	if !ok {
		return
	}
	data := cart.SaleData{Sale: sale}
	body, err := encodeBody(e.hub.cfg.Now(), data)
	if err != nil {
		return
	}
	e.mu.Lock() // in order with this node's own events of the stream
	defer e.mu.Unlock()
	if sale.Status == cart.SaleEnded {
		e.endedSales[sale.ID] = true
	}
	if _, err := sp.PublishSeen(ctx, e.sid, cart.EventSale, body, stockValues(data), true); err != nil {
		e.hub.cfg.Logger.Warn("live: rescue sale event", "stream", e.sid, "sale", saleID, "err", err)
	}
}

// rescueProducts publishes, for each product of ids, the store's product: a product
// event (a creation, a hide or unhide, a change) that the node which made it never
// published (it died), or that gave way in a full emit queue (overflowLocked). A
// hidden product's is its hide's event (its viewers drop it). The store is read with
// mu held, as publishLocal does: no event of the stream's own goes out between the
// read and its publication; another node's may: the rescue is published with the
// stamp of the comparison (StaleStock) that found it, and dropped if an event of the
// product went out since (PublishRescued): it may be newer than the product read. A
// product whose rescue is still under way (a slow store, many products) is left to
// it: it reads the store, and takes the stamp, after this comparison (a read under
// way meanwhile keeps the stamp it took: its publication is dropped, and a later
// comparison finds the product again). Stamp 0: published unchecked.
func (e *emitter) rescueProducts(ids []string, stamp int64) {
	ids = e.startRescues(ids, stamp)
	if len(ids) == 0 {
		return
	}
	if !e.goHeld(func() {
		defer e.endRescues(ids)
		ctx, cancel := context.WithTimeout(e.hub.backgroundCtx, 5*time.Second)
		defer cancel()
		for _, id := range ids {
			if err := e.publishRescuedProduct(ctx, id); err != nil {
				e.hub.cfg.Logger.Warn("live: rescue product event", "stream", e.sid, "product", id, "err", err)
				return
			}
		}
	}) {
		e.endRescues(ids)
	}
}

// startRescues marks the products of ids as being rescued with stamp and returns
// those that were not already (rescueProducts); those that were get the stamp.
func (e *emitter) startRescues(ids []string, stamp int64) []string {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	if e.rescuing == nil {
		e.rescuing = map[string]int64{}
	}
	out := ids[:0:0]
	for _, id := range ids {
		if _, ok := e.rescuing[id]; !ok {
			out = append(out, id)
		}
		e.rescuing[id] = stamp
	}
	return out
}

// rescueStamp is the stamp of the last comparison that found product id (startRescues).
func (e *emitter) rescueStamp(id string) int64 {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	return e.rescuing[id]
}

// endRescues unmarks the products of ids (startRescues): their rescue is over, done or
// not (a later comparison finds those still differing).
func (e *emitter) endRescues(ids []string) {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	for _, id := range ids {
		delete(e.rescuing, id)
	}
}

// publishRescuedProduct reads and publishes the store's product id (rescueProducts).
func (e *emitter) publishRescuedProduct(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	stamp := e.rescueStamp(id) // before the read: a comparison after it re-stamps
	p, err := e.hub.cfg.Stock.GetProduct(ctx, id)
	if errors.Is(err, cart.ErrNotFound) || (err == nil && p.StreamID != e.sid) {
		return nil
	}
	if err != nil {
		return err
	}
	// As publishNow, without publishLocal's second read of the product (hiddenNow): it
	// was read just now, with mu held. A hidden one's is its hide's event.
	e.supersedeProduct(p)
	data := cart.ProductData{Product: p, Toggled: p.Hidden}
	sp, ok := e.hub.cfg.Bus.(seenPublisher)
	if stamp == 0 || !ok {
		e.hub.publish(ctx, e.sid, cart.EventProduct, data)
		return nil
	}
	body, err := encodeBody(e.hub.cfg.Now(), data)
	if err != nil {
		return nil
	}
	if _, err := sp.PublishRescued(ctx, e.sid, cart.EventProduct, body, stockValues(data), stamp); err != nil {
		e.hub.cfg.Logger.Warn("live: rescue product event", "stream", e.sid, "product", id, "err", err)
	}
	return nil
}

// rescueStreamEnd publishes the stream's end that the node which ended it never
// published (it died): first the sale events of sales (their ends, lost with it), then
// the stream event with the stream as a viewer's snapshot shows it (r's connections'
// SnapshotSource), which closes the viewers. It is dropped if the stream's end went
// out meanwhile (PublishSeen onlyNewer).
func (e *emitter) rescueStreamEnd(r *room, sales []string) {
	e.goHeld(func() {
		ctx, cancel := context.WithTimeout(e.hub.backgroundCtx, 5*time.Second)
		defer cancel()
		for _, id := range sales {
			e.publishRescuedSale(ctx, id)
		}
		sp, ok := e.hub.cfg.Bus.(seenPublisher)
		snaps := r.snapshots()
		if !ok || snaps == nil {
			return
		}
		snap, err := snaps.Snapshot(ctx, e.sid)
		if err != nil {
			e.hub.cfg.Logger.Warn("live: rescue stream end", "stream", e.sid, "err", err)
			return
		}
		data := cart.StreamData{Stream: snap.Stream, Ended: true}
		body, err := encodeBody(e.hub.cfg.Now(), data)
		if err != nil || !isStreamEnded(buildFrame(EventStream, 0, body)) {
			return
		}
		e.mu.Lock() // in order with this node's own events of the stream
		defer e.mu.Unlock()
		if _, err := sp.PublishSeen(ctx, e.sid, EventStream, body, stockValues(data), true); err != nil {
			e.hub.cfg.Logger.Warn("live: rescue stream end", "stream", e.sid, "err", err)
		}
	})
}

// rescuePins publishes, for each product of ids, the store's pin state: a pin (with
// the product) when it is pinned, else an unpin; a pin or unpin event that the node
// which made the change never published (it died). Each is dropped if a pin or unpin
// of the product went out since the comparison that found it (stamp): that one may be
// newer than the state read here. A hidden product's pin is never sent (hiddenNow).
func (e *emitter) rescuePins(ids []string, stamp int64) {
	e.goHeld(func() {
		ctx, cancel := context.WithTimeout(e.hub.backgroundCtx, 5*time.Second)
		defer cancel()
		sp, ok := e.hub.cfg.Bus.(seenPublisher)
		if !ok {
			return
		}
		pinned, err := e.hub.cfg.Stock.ListPinned(ctx, e.sid)
		if err != nil {
			e.hub.cfg.Logger.Warn("live: rescue pins", "stream", e.sid, "err", err)
			return
		}
		for _, id := range ids {
			typ, data := cart.EventUnpin, any(cart.UnpinData{ProductID: id})
			for _, p := range pinned {
				if p.ID == id {
					typ, data = cart.EventPin, cart.PinData{Product: p}
				}
			}
			if d, ok := data.(cart.PinData); ok && e.hiddenNow(ctx, d.Product, false) {
				continue
			}
			e.publishRescuedPin(ctx, sp, typ, data, stamp)
		}
	})
}

// publishRescuedPin publishes one rescued pin or unpin event (rescuePins).
func (e *emitter) publishRescuedPin(ctx context.Context, sp seenPublisher, typ string, data any, stamp int64) {
	body, err := encodeBody(e.hub.cfg.Now(), data)
	if err != nil {
		return
	}
	e.mu.Lock() // in order with this node's own events of the stream
	defer e.mu.Unlock()
	if _, err := sp.PublishRescued(ctx, e.sid, typ, body, stockValues(data), stamp); err != nil {
		e.hub.cfg.Logger.Warn("live: rescue pin event", "stream", e.sid, "type", typ, "err", err)
	}
}

// runGate takes turns at the stock gate until a value read after every change noted
// here has been published (by this node or another), or the hub closes.
func (e *emitter) runGate(key string, st *gatedStock) {
	ctx := e.hub.backgroundCtx
	interval := e.hub.cfg.CoalesceInterval
	failing := false
	for {
		e.mu.Lock()
		count, need := st.dirty, st.need
		st.dirty = false
		if !count && st.rescue {
			need = -1 // whatever is counted now, on any node
		}
		st.rescue = false
		if !count && need == 0 {
			st.running = false
			e.mu.Unlock()
			return
		}
		e.mu.Unlock()
		wait, err := e.stockTurn(ctx, key, st, count, need, interval)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				e.hub.cfg.Logger.Warn("live: stock event; retrying", "stream", e.sid, "key", key, "err", err)
			}
			failing, wait = true, interval
			e.mu.Lock()
			if count {
				st.dirty = true // not counted: count again
			} else if need < 0 {
				st.rescue = true
			}
			e.mu.Unlock()
		} else {
			failing = false
		}
		if wait > 0 && !sleepCtx(ctx, wait) {
			return
		}
	}
}

// stockTurn asks the gate once and publishes when it is this node's turn. It returns
// how long to wait before asking again.
func (e *emitter) stockTurn(ctx context.Context, key string, st *gatedStock, count bool, need int64, interval time.Duration) (time.Duration, error) {
	turn, err := e.hub.stockGate.StockTurn(ctx, e.sid, key, count, need, interval)
	if err != nil {
		return 0, err
	}
	e.mu.Lock()
	st.need = turn.Need
	ev := st.ev
	e.mu.Unlock()
	switch {
	case turn.Covered:
	case turn.Take:
		// Read after our changes were counted: this value covers them, published or
		// dropped as older than one already out.
		if err := e.publishStock(ctx, key, ev, turn.Version, interval); err != nil {
			return 0, err
		}
	default:
		return turn.Wait, nil
	}
	e.mu.Lock()
	if st.need == turn.Need {
		st.need = 0
	}
	e.mu.Unlock()
	return 0, nil
}

// publishStock publishes the store's current value of ev's sale or product as version
// ver of key.
func (e *emitter) publishStock(ctx context.Context, key string, ev cart.Event, ver int64, interval time.Duration) error {
	d, _ := ev.Data.(cart.StockData)
	d, hidden, err := e.storeStock(ctx, d)
	// The version covers every change counted so far, on every node: only a value
	// read now may go out under it. ev's own value may be older than another node's
	// counted change, which would then never be published; the turn is tried again.
	if err != nil && !errors.Is(err, cart.ErrNotFound) {
		return fmt.Errorf("live: read stock of %s: %w", key, err)
	}
	var body []byte // nil: a hidden product's, marked published and not sent
	if !hidden {
		if body, err = encodeBody(e.hub.cfg.Now(), d); err != nil {
			return err
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, _, err = e.hub.stockGate.PublishStock(pctx, e.sid, key, ver, interval, cart.EventStock, body, d.Remaining)
	return err
}

// publishFinalStock publishes an ended sale's stock (final: it never changes again) at
// once, not after the coalesce interval or the gate's turn: the stream's end event,
// which closes the viewers, may follow right after. This one event may come sooner
// than the interval after the one before. On the gate it is published as a version
// covering every change counted so far, so no value read before it can follow it.
func (e *emitter) publishFinalStock(ctx context.Context, key string, ev cart.Event) {
	if e.hub.stockGate == nil {
		if p := e.pending[key]; p != nil {
			p.timer.Stop()
			delete(e.pending, key)
		}
		e.lastSent[key] = e.hub.cfg.Now()
		e.publishLocal(ctx, ev)
		return
	}
	interval := e.hub.cfg.CoalesceInterval
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	turn, err := e.hub.stockGate.StockTurn(ctx, e.sid, key, true, 0, interval)
	if err == nil && !turn.Covered {
		ver := turn.Need
		if turn.Take {
			ver = turn.Version
		}
		var body []byte
		d, _ := ev.Data.(cart.StockData)
		if body, err = encodeBody(e.hub.cfg.Now(), d); err == nil {
			_, _, err = e.hub.stockGate.PublishStock(ctx, e.sid, key, ver, interval, ev.Type, body, d.Remaining)
		}
	}
	if err != nil {
		e.hub.cfg.Logger.Warn("live: final stock event; left to the gate's turns", "stream", e.sid, "key", key, "err", err)
		e.gateStock(key, ev)
	}
}

// storeStock returns d carrying the store's current free units of its sale or product,
// and whether it is a hidden product's (not for viewers).
func (e *emitter) storeStock(ctx context.Context, d cart.StockData) (cart.StockData, bool, error) {
	if d.SaleID != "" {
		sale, err := e.hub.cfg.Stock.GetSale(ctx, d.SaleID)
		if err != nil {
			return d, false, err
		}
		d.ProductID, d.Remaining = sale.ProductID, sale.Remaining
		return d, false, nil
	}
	p, err := e.hub.cfg.Stock.GetProduct(ctx, d.ProductID)
	if err != nil {
		return d, false, err
	}
	d.Remaining = p.Stock
	return d, p.Hidden, nil
}

// publishLocal publishes a stock event coalesced on this node (no StockGate) with the
// store's value when the hub can read it (Config.Stock): the callers of changes that
// committed together (the embedded store's group commit) emit in any order, so the
// value emitted last need not be the newest. A product or pin event of a hidden product
// is dropped (hiddenNow). Other events are published as they are. The event is tried
// until it is out (publishEmitted): e.mu is held meanwhile, so the stream's later
// events wait in its emit queue, in order.
func (e *emitter) publishLocal(ctx context.Context, ev cart.Event) {
	switch d := ev.Data.(type) {
	case cart.ProductData:
		if e.hiddenNow(ctx, d.Product, d.Toggled) {
			return
		}
	case cart.PinData:
		if e.hiddenNow(ctx, d.Product, false) {
			return
		}
	}
	if d, ok := ev.Data.(cart.StockData); ok && e.hub.cfg.Stock != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		fresh, hidden, err := e.storeStock(rctx, d)
		cancel()
		if hidden {
			return // a hidden product's stock is nobody's business
		}
		if err != nil {
			e.hub.cfg.Logger.Warn("live: read stock for stock event", "stream", e.sid, "sale", d.SaleID, "product", d.ProductID, "err", err)
		} else {
			ev.Data = fresh
		}
	}
	e.hub.publishEmitted(e.sid, ev.Type, ev.Data)
}

// hiddenNow reports whether an event carrying p must not reach the viewers: p is
// hidden, in the event (a change of it while hidden: a sale's units coming back) or in
// the store now (an event read before a hide that is out, its request racing the
// hide), unless the event is the hide's own (toggled). The unhiding product event
// carries the current state. A store that cannot be read lets the event go out.
func (e *emitter) hiddenNow(ctx context.Context, p cart.Product, toggled bool) bool {
	if p.Hidden {
		return !toggled
	}
	if e.hub.cfg.Stock == nil {
		return false
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	cur, err := e.hub.cfg.Stock.GetProduct(rctx, p.ID)
	cancel()
	if err != nil {
		if !errors.Is(err, cart.ErrNotFound) {
			e.hub.cfg.Logger.Warn("live: read product for its event", "stream", e.sid, "product", p.ID, "err", err)
		}
		return false
	}
	return cur.Hidden
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
