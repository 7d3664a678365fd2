package cart

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Benchmarks of the stock-changing hot path on both stores, run in parallel like a
// storm: go test ./cart/ -run '^$' -bench 'Hold|Checkout' -cpu 2,8,32
var benchStores = []struct {
	name string
	open func(b *testing.B) Store
}{
	{"bolt", func(b *testing.B) Store {
		st, err := OpenBolt(b.TempDir() + "/bench.db")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		return st
	}},
	{"redis", func(b *testing.B) Store { return openTestRedis(b, benchRedisURL()) }},
}

// benchRedisURL is LIVECART_BENCH_REDIS_URL, else the tests' Redis. A private
// redis-server makes the redis-µs/op and redis-cmds/op metrics exact.
func benchRedisURL() string {
	if u := os.Getenv("LIVECART_BENCH_REDIS_URL"); u != "" {
		return u
	}
	return testRedisURL
}

// redisCost reports what the benchmark cost Redis per op: its CPU (INFO cpu, user +
// sys) and the commands it ran (scripts' own commands included). Other clients of
// the same Redis count too. Call it after the setup; it reports when b ends.
func redisCost(b *testing.B, st Store) {
	rs, ok := st.(*RedisStore)
	if !ok {
		return
	}
	read := func() (cpu float64, cmds int64) {
		info, err := rs.rdb.Info(context.Background(), "cpu", "stats").Result()
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			k, v, _ := strings.Cut(line, ":")
			switch k {
			case "used_cpu_user", "used_cpu_sys":
				f, _ := strconv.ParseFloat(v, 64)
				cpu += f
			case "total_commands_processed":
				cmds, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		return cpu, cmds
	}
	cpu0, cmds0 := read()
	b.Cleanup(func() {
		rs.background.Wait()
		cpu1, cmds1 := read()
		b.ReportMetric((cpu1-cpu0)*1e6/float64(b.N), "redis-µs/op")
		b.ReportMetric(float64(cmds1-cmds0-1)/float64(b.N), "redis-cmds/op") // -1: the INFO
	})
}

// benchSale creates a stream with an active sale big enough for any run.
func benchSale(b testing.TB, st Store, now time.Time) Sale {
	ctx := context.Background()
	sid := uuid.NewString()
	if err := st.CreateStream(ctx, Stream{ID: sid, Status: StreamLive, CreatedAt: now}); err != nil {
		b.Fatal(err)
	}
	p, err := st.CreateProduct(ctx, Product{ID: uuid.NewString(), StreamID: sid, PriceCents: 100, Currency: "EUR", Stock: 1_000_000}, 0)
	if err != nil {
		b.Fatal(err)
	}
	s, _, err := st.CreateSale(ctx, Sale{ID: uuid.NewString(), StreamID: sid, ProductID: p.ID, PriceCents: 50,
		Quantity: 1_000_000, PerUserLimit: 1, StartsAt: now, EndsAt: now.Add(time.Hour)}, now, 0)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkHold: distinct buyers each hold one unit of one sale.
func BenchmarkHold(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			st, now := bs.open(b), time.Now().UTC()
			sale := benchSale(b, st, now)
			var n atomic.Int64
			redisCost(b, st)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := HoldRequest{ID: uuid.NewString(), UserID: fmt.Sprint("u", n.Add(1)), SaleID: sale.ID, Quantity: 1, ExpiresAt: now.Add(time.Minute)}
					if _, _, err := st.HoldUnits(context.Background(), req, now); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkHoldCheckout: distinct buyers each hold one unit and check it out.
func BenchmarkHoldCheckout(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			st, now := bs.open(b), time.Now().UTC()
			sale := benchSale(b, st, now)
			var n atomic.Int64
			redisCost(b, st)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					user := fmt.Sprint("u", n.Add(1))
					req := HoldRequest{ID: uuid.NewString(), UserID: user, SaleID: sale.ID, Quantity: 1, ExpiresAt: now.Add(time.Minute)}
					if _, _, err := st.HoldUnits(ctx, req, now); err != nil {
						b.Fatal(err)
					}
					co := CheckoutRequest{OrderID: uuid.NewString(), UserID: user, IdempotencyKey: "k", Fingerprint: "{}"}
					if _, err := st.Checkout(ctx, co, now); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
