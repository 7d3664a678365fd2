package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/livecart/livecart/cart"
)

// queued reports the stream's emit queue: events and bytes.
func (h *Hub) queued(sid string) (int, int) {
	e := h.emitter(sid)
	defer h.release(e)
	e.qmu.Lock()
	defer e.qmu.Unlock()
	return len(e.queue), e.queueBytes
}

// TestEmitQueueBoundedWhileRedisFrozen: the bus's Redis freezes while a busy stream's
// changes keep coming (3 products changing 300 times, pins going on and off). The
// stream's queue for the bus stays within EmitQueueMax and EmitQueueBytes (it held
// every one of the 600 events before: 599 queued), a state event superseding the
// queued one of its product; an announce over the bound is refused with ErrBacklog at
// once. After the thaw the viewer gets each product's newest value and pin state.
func TestEmitQueueBoundedWhileRedisFrozen(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	r, _, bus := startHangableBus(t, "emitq-"+uuid.NewString()[:8])
	const maxEvents, maxBytes = 8, 4 << 10
	ts := newTestServer(t, Config{Bus: bus, EmitQueueMax: maxEvents, EmitQueueBytes: maxBytes})
	sid := uuid.NewString()
	c := ts.dial(t, sid, "")
	c.nextOf(t, "snapshot")
	announce(ts.hub, sid, "before")
	c.nextOf(t, "announce")

	pids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	thaw := r.freezeTillThaw(t)
	emit := func(ev cart.Event) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		ts.hub.Emit(ctx, ev)
	}
	for i := range 300 {
		pid := pids[i%len(pids)]
		emit(cart.Event{StreamID: sid, Type: cart.EventProduct, Data: cart.ProductData{Product: cart.Product{ID: pid, StreamID: sid, Title: fmt.Sprint("p ", i), Stock: i}}})
		if i%2 == 0 {
			emit(cart.Event{StreamID: sid, Type: cart.EventPin, Data: cart.PinData{Product: cart.Product{ID: pid, StreamID: sid, Stock: i}}})
		} else {
			emit(cart.Event{StreamID: sid, Type: cart.EventUnpin, Data: cart.UnpinData{ProductID: pid}})
		}
		if n, b := ts.hub.queued(sid); n > maxEvents || b > maxBytes+1024 {
			t.Fatalf("after %d changes with Redis frozen the stream's queue holds %d events, %d bytes; want at most %d, about %d", i+1, n, b, maxEvents, maxBytes)
		}
	}
	// At once: well within a second (a loaded -race run can stall the test for a tenth
	// of one), where a refusal that waited for the frozen Redis would take a publication
	// try's 5 s, and a TryEmit that queued it would wait for the thaw.
	start := time.Now()
	err := ts.hub.TryEmit(context.Background(), cart.Event{StreamID: sid, Type: EventAnnounce, Data: AnnounceData{Text: "over"}})
	if !errors.Is(err, ErrBacklog) || !errors.Is(err, cart.ErrUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("announce over a full queue: %v after %v, want ErrBacklog (unavailable) at once", err, time.Since(start))
	}

	thaw()
	// The newest of each product: product 297/298/299 (stock i), pinned when i is even.
	wantStock := map[string]int{pids[0]: 297, pids[1]: 298, pids[2]: 299}
	wantPinned := map[string]bool{pids[0]: false, pids[1]: true, pids[2]: false}
	gotStock, gotPinned := map[string]int{}, map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(gotStock) < 3 || len(gotPinned) < 3 || !sameMap(gotStock, wantStock) || !sameMap(gotPinned, wantPinned) {
		select {
		case m := <-c.msgs:
			switch m.Type {
			case "product":
				gotStock[m.Product.ID] = m.Product.Stock
			case "pin":
				gotPinned[m.Product.ID] = true
			case "unpin":
				gotPinned[m.ProductID] = false
			}
		case <-deadline:
			t.Fatalf("after the thaw: products %v pins %v, want %v and %v", gotStock, gotPinned, wantStock, wantPinned)
		}
	}
	if n, _ := ts.hub.queued(sid); n != 0 {
		t.Fatalf("%d events still queued after the thaw", n)
	}
}

// startHangableStore is startHangableBus with a Redis store (key prefix prefix too) on
// the same hangableRedis, closed when the test ends.
func startHangableStore(t *testing.T, prefix string) (*hangableRedis, *redis.Client, *RedisBus, *cart.RedisStore) {
	t.Helper()
	r, rdb, bus := startHangableBus(t, prefix)
	store, err := cart.OpenRedis(context.Background(), "redis://"+r.addr()+"/0", cart.RedisOptions{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return r, rdb, bus, store
}

func sameMap[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestEmitQueueOverflowLeftToRescue: with the node-death comparison on (a stock gate
// and a store), sale creations whose events find the frozen bus's queue full give way
// (the queue stays within EmitQueueMax; it held all 12 before) and still reach the
// viewer after the thaw: the comparison finds them never delivered and publishes the
// store's sales.
func TestEmitQueueOverflowLeftToRescue(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	prefix := "emitr-" + uuid.NewString()[:8]
	r, rdb, bus, store := startHangableStore(t, prefix)
	ctx := context.Background()
	const maxEvents = 4
	ts := newTestServer(t, Config{Bus: bus, Presence: NewRedisPresence(rdb, prefix, "node-a", nil), Stock: store, EmitQueueMax: maxEvents})
	sid, pid := newStreamWithProduct(t, ctx, store)
	c := ts.dial(t, sid, "")
	c.nextOf(t, "snapshot")
	waitComparison(t, ts.hub) // the stream's first comparison: its baseline

	want := map[string]bool{}
	var sales []cart.Sale
	for range 12 {
		s := newActiveSale(t, ctx, store, sid, pid)
		sales = append(sales, s)
		want[s.ID] = true
	}
	thaw := r.freezeTillThaw(t)
	for _, s := range sales {
		ectx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
		ts.hub.Emit(ectx, cart.Event{StreamID: sid, Type: cart.EventSale, Data: cart.SaleData{Sale: s}})
		cancel()
		if n, _ := ts.hub.queued(sid); n > maxEvents {
			t.Fatalf("the stream's queue holds %d events with Redis frozen, want at most %d", n, maxEvents)
		}
	}
	thaw()
	deadline := time.After(8 * time.Second)
	for len(want) > 0 {
		select {
		case m := <-c.msgs:
			if m.Type == "sale" {
				delete(want, m.Sale.ID)
			}
		case <-deadline:
			t.Fatalf("%d of 12 sales never reached the viewer after the thaw", len(want))
		}
	}
}

// TestStreamEndNeverAheadOfRescuedSaleEnd: Redis freezes while a stream ends; its
// queue for the bus is full, so the sale's end (nothing of the sale queued) is left to
// the node-death comparison, and the stream's end finds a queued stream event to
// supersede. The viewer still gets the sale's end before the stream's, which closes
// it (API.md: the sale (ended) events, then the stream event): the stream's end is
// left to the comparison too, which publishes the sales' ends first. (Before: the
// stream's end went out with the queue after the thaw and the viewer was closed
// without the sale's end.)
func TestStreamEndNeverAheadOfRescuedSaleEnd(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	prefix := "emite-" + uuid.NewString()[:8]
	r, rdb, bus, store := startHangableStore(t, prefix)
	ctx := context.Background()
	snaps := SnapshotFunc(func(ctx context.Context, sid string) (Snapshot, error) {
		st, err := store.GetStream(ctx, sid)
		return Snapshot{Stream: map[string]string{"id": sid, "status": string(st.Status)}}, err
	})
	ts := newTestServer(t, Config{Bus: bus, Presence: NewRedisPresence(rdb, prefix, "node-a", nil), Stock: store,
		Snapshots: snaps, EmitQueueMax: 2})
	sid, pid := newStreamWithProduct(t, ctx, store)
	c := ts.dial(t, sid, "")
	c.nextOf(t, "snapshot")
	sale := newActiveSale(t, ctx, store, sid, pid)
	ts.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventSale, Data: cart.SaleData{Sale: sale}})
	c.nextOf(t, "sale")
	waitComparison(t, ts.hub) // the stream's first comparison: its baseline

	st, ended, err := store.EndStream(ctx, sid, time.Now())
	if err != nil || len(ended) != 1 {
		t.Fatalf("end stream: %v, %d sales ended", err, len(ended))
	}
	thaw := r.freezeTillThaw(t)
	emit := func(ev cart.Event) {
		ectx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
		defer cancel()
		ts.hub.Emit(ectx, ev)
	}
	live := map[string]string{"id": sid, "status": "live"}
	product := cart.Event{StreamID: sid, Type: cart.EventProduct, Data: cart.ProductData{Product: cart.Product{ID: pid, StreamID: sid, Title: "P"}}}
	emit(product) // in flight, stuck in the frozen Redis
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		if n, _ := ts.hub.queued(sid); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first event never left the queue")
		}
	}
	emit(cart.Event{StreamID: sid, Type: cart.EventStream, Data: cart.StreamData{Stream: live}})
	emit(product)
	emit(cart.Event{StreamID: sid, Type: cart.EventSale, Data: cart.SaleData{Sale: ended[0]}})
	emit(cart.Event{StreamID: sid, Type: cart.EventStream, Data: cart.StreamData{Stream: map[string]string{"id": sid, "status": string(st.Status)}, Ended: true}})
	thaw()

	saleEnded := false
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-c.msgs:
			switch {
			case m.Type == "sale" && m.Sale.ID == sale.ID && m.Sale.Status == cart.SaleEnded:
				saleEnded = true
			case m.Type == "stream" && strings.Contains(string(m.Stream), `"status":"ended"`):
				if !saleEnded {
					t.Fatal("the stream's end reached the viewer before the sale's end")
				}
				return
			}
		case <-deadline:
			t.Fatalf("no stream end within 10 s of the thaw (sale ended: %v)", saleEnded)
		}
	}
}

// TestStockEventSizeWithoutEncoding: a stock event's queue size is counted from its
// fields (no encoding, no allocation on every hold and checkout) and never below what
// its JSON takes.
func TestStockEventSizeWithoutEncoding(t *testing.T) {
	for _, d := range []cart.StockData{
		{SaleID: uuid.NewString(), ProductID: uuid.NewString(), Remaining: 0},
		{SaleID: uuid.NewString(), ProductID: uuid.NewString(), Remaining: math.MaxInt64},
		{ProductID: uuid.NewString(), Remaining: math.MinInt64},
	} {
		ev := cart.Event{Type: cart.EventStock, Data: d}
		b, err := json.Marshal(ev.Data)
		if err != nil {
			t.Fatal(err)
		}
		if got, min := eventSize(ev), 128+len(ev.Type)+len(b); got < min {
			t.Errorf("eventSize(%+v) = %d, below its JSON's %d", d, got, min)
		}
		if a := testing.AllocsPerRun(100, func() { _ = eventSize(ev) }); a != 0 {
			t.Errorf("eventSize of a stock event allocates %v times", a)
		}
	}
}

// TestEmitQueueFullOfModerationLosesNoState: the bus's Redis freezes with a stream's
// emit queue full of announces (one in flight, EmitQueueMax queued), so a product's
// creation, another product's hide and the stream going idle find nothing of theirs
// queued to supersede and no stock, sale or pin event to take the place of. They
// still reach the viewer after the thaw: the products by the node-death comparison,
// which compares a product's fields too ("product:<id>"), the stream's change queued
// over the bound (one at most: stream events supersede each other). Before, all
// three were dropped and only logged: the viewer never saw the new product, kept the
// hidden one on screen and the stream live. The store is on a Redis of its own that
// keeps answering (the changes are in).
func TestEmitQueueFullOfModerationLosesNoState(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	prefix := "emitm-" + uuid.NewString()[:8]
	r, rdb, bus := startHangableBus(t, prefix)
	ctx := context.Background()
	store, err := cart.OpenRedis(ctx, "redis://"+startHangableRedis(t).addr()+"/0", cart.RedisOptions{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	const maxEvents = 2
	ts := newTestServer(t, Config{Bus: bus, Presence: NewRedisPresence(rdb, prefix, "node-a", nil), Stock: store, EmitQueueMax: maxEvents})
	sid, hidden := newStreamWithProduct(t, ctx, store)
	c := ts.dial(t, sid, "")
	c.nextOf(t, "snapshot")
	waitComparison(t, ts.hub) // the stream's first comparison: its baseline

	thaw := r.freezeTillThaw(t)
	emit := func(ev cart.Event) {
		ectx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
		defer cancel()
		ts.hub.Emit(ectx, ev)
	}
	emit(cart.Event{StreamID: sid, Type: EventAnnounce, Data: AnnounceData{Text: "in flight"}})
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		if n, _ := ts.hub.queued(sid); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first event never left the queue")
		}
	}
	for i := range maxEvents {
		emit(cart.Event{StreamID: sid, Type: EventAnnounce, Data: AnnounceData{Text: fmt.Sprint("queued ", i)}})
	}
	if err := ts.hub.TryEmit(ctx, cart.Event{StreamID: sid, Type: EventAnnounce, Data: AnnounceData{Text: "over"}}); !errors.Is(err, ErrBacklog) {
		t.Fatalf("announce over a full queue: %v, want ErrBacklog", err)
	}

	created, err := store.CreateProduct(ctx, cart.Product{ID: uuid.NewString(), StreamID: sid, SKU: "N", Title: "new one",
		PriceCents: 200, Currency: "EUR", Stock: 5}, 0)
	if err != nil {
		t.Fatal(err)
	}
	hid, _, _, err := store.SetProductHidden(ctx, hidden, true)
	if err != nil {
		t.Fatal(err)
	}
	emit(cart.Event{StreamID: sid, Type: cart.EventProduct, Data: cart.ProductData{Product: created}})
	emit(cart.Event{StreamID: sid, Type: cart.EventProduct, Data: cart.ProductData{Product: hid, Toggled: true}})
	emit(cart.Event{StreamID: sid, Type: cart.EventStream, Data: cart.StreamData{Stream: map[string]string{"id": sid, "status": "idle"}}})
	if n, _ := ts.hub.queued(sid); n > maxEvents+1 {
		t.Fatalf("the stream's queue holds %d events with Redis frozen, want at most %d", n, maxEvents+1)
	}
	thaw()

	var gotCreated, gotHidden, gotIdle bool
	deadline := time.After(10 * time.Second)
	for !gotCreated || !gotHidden || !gotIdle {
		select {
		case m := <-c.msgs:
			switch {
			case m.Type == "product" && m.Product.ID == created.ID && m.Product.Title == "new one" && !m.Product.Hidden:
				gotCreated = true
			case m.Type == "product" && m.Product.ID == hidden && m.Product.Hidden:
				gotHidden = true
			case m.Type == "stream" && strings.Contains(string(m.Stream), `"status":"idle"`):
				gotIdle = true
			}
		case <-deadline:
			t.Fatalf("10 s after the thaw: new product seen %v, hide seen %v, stream idle seen %v; want all", gotCreated, gotHidden, gotIdle)
		}
	}
}

// waitComparison waits until a whole node-death comparison has run since the call (the
// hub's count of compared streams has grown by two: the one under way may have read
// the store before the call), rather than a fixed time a loaded machine can overrun.
func waitComparison(t *testing.T, h *Hub) {
	t.Helper()
	compared := func() float64 {
		var m dto.Metric
		if err := h.metrics.staleChecks.WithLabelValues("compared").Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	want := compared() + 2
	for deadline := time.Now().Add(15 * time.Second); compared() < want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no whole comparison of the stream within 15 s (%v compared)", compared())
		}
	}
}
