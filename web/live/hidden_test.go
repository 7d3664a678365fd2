package live

import (
	"context"
	"testing"
	"time"

	"github.com/livecart/livecart/cart"
)

// TestHiddenProductEventsNotPublished: once a product is hidden (its `product` event
// out), the events of it that come after do not reach the viewers, on one node and
// across nodes: a `pin` and a `product` event read before the hide and published after
// it (their requests raced the hide), and the `product` event of its sale's end (the
// units come back while it is hidden, also held back for the coalesce interval and
// published when the node closes). The sale's own events still go out. Node B, which
// emitted them, then dies; node A's node-death rescue must not publish them either.
// The unhiding `product` event carries the current state.
func TestHiddenProductEventsNotPublished(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	for _, redisBus := range []bool{false, true} {
		name := "memory"
		if redisBus {
			name = "redis"
		}
		t.Run(name, func(t *testing.T) {
			rdb, prefix := testRedis(t, "livetest-hidden")
			cleanupPrefix(t, rdb, prefix)
			ctx := context.Background()
			store := openRedisStore(t, rdb, prefix+"-store")
			var a, b *testServer
			if redisBus {
				busA, busB := NewRedisBus(rdb, prefix, nil, nil), NewRedisBus(rdb, prefix, nil, nil)
				t.Cleanup(func() { busA.Close(); busB.Close() })
				a = newTestServer(t, Config{Bus: busA, Presence: NewRedisPresence(rdb, prefix, "node-a", nil),
					Stock: store, ViewersInterval: time.Hour})
				b = newTestServer(t, Config{Bus: busB, Presence: NewRedisPresence(rdb, prefix, "node-b", nil),
					Stock: store, ViewersInterval: time.Hour})
			} else {
				a = newTestServer(t, Config{Stock: store, ViewersInterval: time.Hour})
				b = a
			}
			sid, pid := newStreamWithProduct(t, ctx, store)
			s := newActiveSale(t, ctx, store, sid, pid)
			pinned, _, err := store.PinProduct(ctx, sid, pid, 5)
			if err != nil {
				t.Fatal(err)
			}
			viewer := a.dial(t, sid, "")
			viewer.nextOf(t, "snapshot")
			// A product event of a stock-only change just out: the next one is held back.
			shown, _ := store.GetProduct(ctx, pid)
			b.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventProduct, Data: cart.ProductData{Product: shown}})
			viewer.nextOf(t, "product")

			hidden, changed, unpinned, err := store.SetProductHidden(ctx, pid, true)
			if err != nil || !changed || !unpinned {
				t.Fatalf("hide: %v %v %v", changed, unpinned, err)
			}
			b.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventProduct, Data: cart.ProductData{Product: hidden, Toggled: true}})
			b.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventUnpin, Data: cart.UnpinData{ProductID: pid}})
			if m := viewer.nextOf(t, "product"); m.Product.ID != pid {
				t.Fatalf("got %+v, want the hide's product event", m)
			}
			viewer.nextOf(t, "unpin")

			// Events read before the hide, published after it.
			b.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventPin, Data: cart.PinData{Product: pinned[0]}})
			b.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventProduct, Data: cart.ProductData{Product: shown}})
			// The sale ends: its units come back to the hidden product.
			ended, p, changed, err := store.StopSale(ctx, s.ID, time.Now())
			if err != nil || !changed || !p.Hidden {
				t.Fatalf("stop sale: %+v %v %v", p, changed, err)
			}
			b.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventSale, Data: cart.SaleData{Sale: ended}})
			b.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventStock, Data: cart.StockData{SaleID: ended.ID, ProductID: pid}})
			b.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventProduct, Data: cart.ProductData{Product: p}})
			if redisBus {
				b.hub.Close() // publishes what it held back; then A's rescue has its chance
				time.Sleep(3 * StockRescueAfter)
			} else {
				time.Sleep(5 * a.hub.cfg.CoalesceInterval)
			}
			announce(a.hub, sid, "fence")
			sawSale := false
			for {
				m := viewer.next(t)
				if m.Type == EventAnnounce {
					break
				}
				switch {
				case m.Type == cart.EventSale && m.Sale.ID == s.ID && m.Sale.Status == cart.SaleEnded:
					sawSale = true
				case m.Type == cart.EventPin || m.Type == cart.EventProduct || (m.Type == cart.EventStock && m.SaleID == ""):
					t.Fatalf("event %+v of the hidden product reached the viewer", m)
				}
			}
			if !sawSale {
				t.Fatal("the sale's ended event never came: the sale is public")
			}

			shownAgain, changed, _, err := store.SetProductHidden(ctx, pid, false)
			if err != nil || !changed {
				t.Fatalf("unhide: %v %v", changed, err)
			}
			a.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventProduct, Data: cart.ProductData{Product: shownAgain, Toggled: true}})
			if m := viewer.nextOf(t, "product"); m.Product.ID != pid || m.Product.Stock != 1000 {
				t.Fatalf("got %+v, want the product shown again with its 1000 units", m)
			}
		})
	}
}
