package live

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/cart"
)

// BenchmarkStaleStockCompare is one stream's once-a-second comparison of the store's
// stock values, sale statuses and pins with the delivered ones (Hub.staleStock:
// ListSales, ListProducts, ListPinned and stock_seen.lua on the shared Redis), which
// one node with viewers of the stream does each second. The first product is pinned;
// nothing differs (the usual case). With ended sales, their final values found
// delivered are not read again (the room's settled sales). "turn=taken" is what each other node
// with viewers of the stream pays that second instead: StaleTurn finding the turn
// taken.
func BenchmarkStaleStockCompare(b *testing.B) {
	b.Run("turn=taken", func(b *testing.B) {
		rdb, prefix := testRedis(b, "livebench-staleturn")
		cleanupPrefix(b, rdb, prefix)
		ctx := context.Background()
		bus := NewRedisBus(rdb, prefix, nil, nil)
		b.Cleanup(func() { bus.Close() })
		sid := uuid.NewString()
		if _, err := bus.StaleTurn(ctx, sid); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := bus.StaleTurn(ctx, sid); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, size := range []struct{ sales, ended, products int }{{1, 0, 1}, {5, 0, 20}, {20, 0, 100}, {20, 19, 100}} {
		name := fmt.Sprintf("sales=%d/products=%d", size.sales, size.products)
		if size.ended > 0 {
			name = fmt.Sprintf("sales=%d/ended=%d/products=%d", size.sales, size.ended, size.products)
		}
		b.Run(name, func(b *testing.B) {
			rdb, prefix := testRedis(b, "livebench-stale")
			cleanupPrefix(b, rdb, prefix)
			ctx := context.Background()
			store := openRedisStore(b, rdb, prefix+"-store")
			bus := NewRedisBus(rdb, prefix, nil, nil)
			b.Cleanup(func() { bus.Close() })
			h := NewHub(Config{Bus: bus, Presence: NewRedisPresence(rdb, prefix, "bench", nil), Stock: store})
			b.Cleanup(func() { h.Close() })
			sid := uuid.NewString()
			if err := store.CreateStream(ctx, cart.Stream{ID: sid, Title: "t", CreatorID: "c", Status: cart.StreamLive,
				StreamKey: "sk_" + uuid.NewString(), CreatedAt: time.Now()}); err != nil {
				b.Fatal(err)
			}
			for i := range size.products {
				pid := uuid.NewString()
				if _, err := store.CreateProduct(ctx, cart.Product{ID: pid, StreamID: sid, SKU: "S", Title: "Product",
					Description: "A product of the bench stream", PriceCents: 100, Currency: "EUR", Stock: 1000}, 0); err != nil {
					b.Fatal(err)
				}
				if i < size.sales {
					s := newActiveSale(b, ctx, store, sid, pid)
					if i < size.ended {
						if _, _, _, err := store.StopSale(ctx, s.ID, time.Now()); err != nil {
							b.Fatal(err)
						}
					}
				}
				if i == 0 {
					if _, _, err := store.PinProduct(ctx, sid, pid, 10); err != nil {
						b.Fatal(err)
					}
				}
			}
			settled := map[string]bool{}
			if _, _, err := h.staleStock(ctx, sid, settled); err != nil { // the baseline
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				keys, _, err := h.staleStock(ctx, sid, settled)
				if err != nil || len(keys) != 0 {
					b.Fatalf("stale keys %v, %v; want none", keys, err)
				}
			}
		})
	}
}
