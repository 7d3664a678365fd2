package cart

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkScrapeReads: the store reads of one /metrics scrape at its bound (256
// sales and 256 products, 8 streams of 32 products with a sale each), one by one
// (GetSale, GetProduct: before 2026-12-05) against the batch calls (GetSales,
// GetProductUnits, which also reads each product's sales):
// go test ./cart/ -run '^$' -bench ScrapeReads
func BenchmarkScrapeReads(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			st := bs.open(b)
			ctx, now := context.Background(), time.Now()
			var saleIDs, productIDs []string
			for range 8 {
				sid := uuid.NewString()
				if err := st.CreateStream(ctx, Stream{ID: sid, Status: StreamIdle, CreatedAt: now}); err != nil {
					b.Fatal(err)
				}
				for range 32 {
					p, err := st.CreateProduct(ctx, Product{ID: uuid.NewString(), StreamID: sid, Currency: "EUR", Stock: 100}, 0)
					if err != nil {
						b.Fatal(err)
					}
					s, _, err := st.CreateSale(ctx, Sale{ID: uuid.NewString(), StreamID: sid, ProductID: p.ID, Quantity: 10,
						PerUserLimit: 1, StartsAt: now, EndsAt: now.Add(time.Hour)}, now, 0)
					if err != nil {
						b.Fatal(err)
					}
					productIDs, saleIDs = append(productIDs, p.ID), append(saleIDs, s.ID)
				}
			}
			b.Run("one-by-one", func(b *testing.B) {
				for b.Loop() {
					for _, id := range saleIDs {
						if _, err := st.GetSale(ctx, id); err != nil {
							b.Fatal(err)
						}
					}
					for _, id := range productIDs {
						if _, err := st.GetProduct(ctx, id); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
			b.Run("batch", func(b *testing.B) {
				for b.Loop() {
					sales, err := st.GetSales(ctx, saleIDs)
					if err != nil || len(sales) != len(saleIDs) {
						b.Fatal(len(sales), err)
					}
					us, err := st.GetProductUnits(ctx, productIDs)
					if err != nil || len(us) != len(productIDs) {
						b.Fatal(len(us), err)
					}
				}
			})
		})
	}
}
