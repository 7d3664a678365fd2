package web

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/live"
)

// benchServer is a Server on a bbolt store in a temp dir with one active sale of
// 1,000,000 units (one per buyer); serve runs one request through its handler.
type benchServer struct {
	h      http.Handler
	a      *auth.Authenticator
	saleID string
}

func newBenchServer(b *testing.B) *benchServer {
	store, err := cart.OpenBolt(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	return newBenchServerOn(b, store)
}

// newBenchRedisServer is newBenchServer on the Redis store: LIVECART_BENCH_REDIS_URL
// (a private redis-server makes its figures its own), else the tests' Redis, under a
// key prefix of its own.
func newBenchRedisServer(b *testing.B) *benchServer {
	url := os.Getenv("LIVECART_BENCH_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	store, err := cart.OpenRedis(context.Background(), url, cart.RedisOptions{Prefix: fmt.Sprintf("bench-%d:", time.Now().UnixNano())})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	// As the binary on the Redis store: every /api/ request bounded by the Redis
	// request timeout (3 s by default).
	return newBenchServerWith(b, store, false, func(d *Deps) { d.Options.StoreTimeout = 3 * time.Second })
}

func newBenchServerOn(b *testing.B, store cart.Store) *benchServer {
	return newBenchServerWith(b, store, false)
}

// newBenchServerWith is newBenchServerOn, with withLive the live hub on an in-process
// bus receiving the domain events, as the binary with the embedded store has it (every
// hold and checkout emits the sale's stock); tweak adjusts the Deps.
func newBenchServerWith(b *testing.B, store cart.Store, withLive bool, tweak ...func(*Deps)) *benchServer {
	bs := &benchServer{a: auth.New([]byte("bench-secret-0123456789"), nil)}
	deps := Deps{Store: store, Auth: bs.a, Logger: slog.New(slog.DiscardHandler)}
	for _, f := range tweak {
		f(&deps)
	}
	if withLive {
		hub := live.NewHub(live.Config{Bus: live.NewMemoryBus(nil, 0), Presence: live.NewMemoryPresence(nil),
			Stock: store, ViewersInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
		b.Cleanup(func() { hub.Close() })
		deps.Live, deps.Events, deps.Presence = hub, hub, hub
	}
	bs.h = New(deps).Handler()
	creator := bs.token(b, auth.RoleCreator, "creator")
	var st, p, s struct{ ID string }
	for _, step := range []struct {
		path, body string
		out        any
	}{
		{"/api/streams", `{"title":"bench"}`, &st},
		{"/api/streams/{sid}/products", `{"sku":"B","title":"bench","price_cents":100,"currency":"EUR","stock":1000000}`, &p},
		{"/api/streams/{sid}/sales", `{"product_id":"{pid}","price_cents":50,"quantity":1000000,"per_user_limit":1,"duration_s":3600}`, &s},
	} {
		path := strings.ReplaceAll(step.path, "{sid}", st.ID)
		code, body := bs.serve(http.MethodPost, path, creator, strings.ReplaceAll(step.body, "{pid}", p.ID), "")
		if code != http.StatusCreated || json.Unmarshal(body, step.out) != nil {
			b.Fatalf("setup %s: %d %s", path, code, body)
		}
	}
	bs.saleID = s.ID
	return bs
}

func (bs *benchServer) token(b *testing.B, role auth.Role, user string) string {
	tok, err := bs.a.Mint(auth.Identity{UserID: user, Name: user, Role: role}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

func (bs *benchServer) serve(method, path, token, body, key string) (int, []byte) {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Authorization", "Bearer "+token)
	if key != "" {
		r.Header.Set("Idempotency-Key", key)
	}
	w := httptest.NewRecorder()
	bs.h.ServeHTTP(w, r)
	return w.Code, w.Body.Bytes()
}

// BenchmarkSaleHandler: one buyer's hold and checkout (two requests) through the HTTP
// handler and the embedded store, many buyers in parallel (group commits form as in a
// storm); BenchmarkNoopHandler: two GET /api/noop. Compare allocs/op and B/op (exact);
// ns/op moves with the machine's load.
func BenchmarkSaleHandler(b *testing.B) {
	benchSale(b, newBenchServer(b))
}

// BenchmarkSaleHandlerLive is BenchmarkSaleHandler with the live hub receiving the
// stock events (no viewers connected).
func BenchmarkSaleHandlerLive(b *testing.B) {
	store, err := cart.OpenBolt(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	benchSale(b, newBenchServerWith(b, store, true))
}

// BenchmarkSaleHandlerRedis is BenchmarkSaleHandler on the Redis store (hold and
// checkout batches form as in a storm).
func BenchmarkSaleHandlerRedis(b *testing.B) {
	benchSale(b, newBenchRedisServer(b))
}

func benchSale(b *testing.B, bs *benchServer) {
	tokens := make([]string, min(b.N, 200_000))
	for i := range tokens {
		tokens[i] = bs.token(b, auth.RoleViewer, fmt.Sprint("buyer-", i))
	}
	hold := fmt.Sprintf(`{"sale_id":%q,"quantity":1}`, bs.saleID)
	var next atomic.Int64
	b.SetParallelism(64)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			tok := tokens[i%int64(len(tokens))]
			if code, body := bs.serve(http.MethodPost, "/api/cart/items", tok, hold, ""); code != http.StatusCreated {
				b.Errorf("hold: %d %s", code, body)
				return
			}
			if code, body := bs.serve(http.MethodPost, "/api/checkout", tok, "", fmt.Sprint("k", i)); code != http.StatusCreated {
				b.Errorf("checkout: %d %s", code, body)
				return
			}
		}
	})
}

func BenchmarkNoopHandler(b *testing.B) {
	bs := newBenchServer(b)
	tok := bs.token(b, auth.RoleViewer, "buyer")
	b.SetParallelism(64)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			for range 2 {
				if code, _ := bs.serve(http.MethodGet, "/api/noop", tok, "", ""); code != http.StatusNoContent {
					b.Errorf("noop: %d", code)
					return
				}
			}
		}
	})
}
