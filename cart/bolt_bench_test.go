package cart

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkBoltHold measures concurrent holds of one sale (every hold succeeds).
func BenchmarkBoltHold(b *testing.B) {
	st, err := OpenBolt(b.TempDir() + "/bench.db")
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx, now := context.Background(), time.Now()
	sid := uuid.NewString()
	st.CreateStream(ctx, Stream{ID: sid, Status: StreamIdle})
	p, _ := st.CreateProduct(ctx, Product{ID: uuid.NewString(), StreamID: sid, Currency: "EUR", Stock: 1_000_000})
	s, _, _ := st.CreateSale(ctx, Sale{ID: uuid.NewString(), StreamID: sid, ProductID: p.ID, Quantity: 1_000_000, PerUserLimit: 1, StartsAt: now, EndsAt: now.Add(time.Hour)}, now)
	var n atomic.Int64
	b.SetParallelism(200)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u := fmt.Sprint("u", n.Add(1))
			if _, _, err := st.HoldUnits(ctx, HoldRequest{ID: uuid.NewString(), UserID: u, SaleID: s.ID, Quantity: 1, ExpiresAt: now.Add(time.Minute)}, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
