package live

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/cart"
)

// TestStockFinalValueWhenEmitsCrossOneNode: on one node (memory bus, embedded store)
// two holds commit together (the store's group commit: 9 left, then 8) and their
// callers, woken in any order, emit 8 first and 9 second. Viewers end with the
// store's final value, 8, not the value emitted last.
func TestStockFinalValueWhenEmitsCrossOneNode(t *testing.T) {
	ctx := context.Background()
	store, err := cart.OpenBolt(filepath.Join(t.TempDir(), "livecart.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ts := newTestServer(t, Config{Stock: store, ViewersInterval: time.Hour})

	sid, pid := newStreamWithProduct(t, ctx, store)
	viewer := ts.dial(t, sid, "")
	viewer.nextOf(t, "snapshot")
	for round := range 2 {
		s := newActiveSale(t, ctx, store, sid, pid)
		var left []int
		for range 2 {
			_, ch, err := store.HoldUnits(ctx, cart.HoldRequest{ID: uuid.NewString(), UserID: uuid.NewString(),
				SaleID: s.ID, Quantity: 1, ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			left = append(left, ch.Sales[0].Remaining)
		}
		ts.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventStock,
			Data: cart.StockData{SaleID: s.ID, ProductID: pid, Remaining: left[1]}})
		if round == 1 { // the late caller comes after an interval: published at once
			time.Sleep(150 * time.Millisecond)
		}
		ts.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventStock,
			Data: cart.StockData{SaleID: s.ID, ProductID: pid, Remaining: left[0]}})
		last := -1
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
			select {
			case m := <-viewer.msgs:
				if m.Type == "stock" && m.SaleID == s.ID {
					last = m.Remain
				}
			case <-time.After(50 * time.Millisecond):
			}
		}
		if last != 8 {
			t.Fatalf("round %d: the last stock event says %d left, want the store's final 8", round, last)
		}
	}
}

// TestHeldBackProductPublishedOnClose: node A holds back a product event (a stock-only
// change right after another) when it shuts down. Its viewers are gone, but viewers on
// node B must still get the product's final state.
func TestHeldBackProductPublishedOnClose(t *testing.T) {
	_, prefix := testRedis(t, "livetest")
	a, rdb := redisNode(t, "livetest-pa-"+uuid.NewString()[:6], prefix)
	b, _ := redisNode(t, "livetest-pb-"+uuid.NewString()[:6], prefix)
	cleanupPrefix(t, rdb, prefix)
	sid := uuid.NewString()
	onB := b.dial(t, sid, "")
	onB.nextOf(t, "snapshot")

	p := cart.Product{ID: uuid.NewString(), StreamID: sid, SKU: "S", Title: "P", PriceCents: 100, Currency: "EUR"}
	for _, stock := range []int{100, 90, 80} { // 80 comes within the interval: held back
		p.Stock = stock
		a.hub.Emit(context.Background(), cart.Event{StreamID: sid, Type: cart.EventProduct, Data: cart.ProductData{Product: p}})
	}
	a.hub.Close()
	for {
		m := onB.nextOf(t, cart.EventProduct)
		if m.Product.ID == p.ID && m.Product.Stock == 80 {
			return
		}
		if m.Product.Stock < 80 {
			t.Fatalf("product event with stock %d, want 80 last", m.Product.Stock)
		}
	}
}

// TestEndedSaleStockBeforeStreamEnd: on one node a sale's stock changes twice within
// the coalesce interval (the second held back), then the stream ends, ending the sale
// (sale, stock 0, stream events in a row). Viewers get the final stock before the
// stream event closes them.
func TestEndedSaleStockBeforeStreamEnd(t *testing.T) {
	ts := newTestServer(t, Config{ViewersInterval: time.Hour})
	sid := uuid.NewString()
	c := ts.dial(t, sid, "")
	c.nextOf(t, "snapshot")
	ctx := context.Background()
	sale := cart.Sale{ID: uuid.NewString(), StreamID: sid, ProductID: uuid.NewString(), Quantity: 10, Status: cart.SaleActive}
	stock := func(n int) {
		ts.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventStock,
			Data: cart.StockData{SaleID: sale.ID, ProductID: sale.ProductID, Remaining: n}})
	}
	stock(9)
	stock(8) // held back for the interval
	sale.Status, sale.Remaining = cart.SaleEnded, 0
	ts.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventSale, Data: cart.SaleData{Sale: sale}})
	stock(0)
	ts.hub.Emit(ctx, cart.Event{StreamID: sid, Type: EventStream,
		Data: map[string]any{"stream": map[string]string{"id": sid, "status": "ended"}}})
	last := -1
	for {
		m := c.next(t)
		if m.Type == "stock" {
			last = m.Remain
		}
		if m.Type == EventStream {
			break
		}
	}
	if last != 0 {
		t.Fatalf("last stock event before the stream's end says %d left, want the final 0", last)
	}
}

// newStreamWithProduct creates an idle stream with one product of 1,000 units in store.
func newStreamWithProduct(t *testing.T, ctx context.Context, store cart.Store) (sid, pid string) {
	t.Helper()
	sid, pid = uuid.NewString(), uuid.NewString()
	if err := store.CreateStream(ctx, cart.Stream{ID: sid, Title: "t", CreatorID: "c", Status: cart.StreamIdle,
		StreamKey: "sk_" + uuid.NewString(), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateProduct(ctx, cart.Product{ID: pid, StreamID: sid, SKU: "S", Title: "P",
		PriceCents: 100, Currency: "EUR", Stock: 1000}, 0); err != nil {
		t.Fatal(err)
	}
	return sid, pid
}

// newActiveSale starts a one-hour sale of 10 units (10 per user, 50 cents) of pid in store.
func newActiveSale(t testing.TB, ctx context.Context, store cart.Store, sid, pid string) cart.Sale {
	t.Helper()
	now := time.Now()
	s, _, err := store.CreateSale(ctx, cart.Sale{ID: uuid.NewString(), StreamID: sid, ProductID: pid,
		PriceCents: 50, Quantity: 10, PerUserLimit: 10, StartsAt: now, EndsAt: now.Add(time.Hour)}, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
