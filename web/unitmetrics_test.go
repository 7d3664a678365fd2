package web

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
)

// redisTestStore opens a Redis store on db 5 (LIVECART_TEST_REDIS_URL moves it, to a
// parallel worker's own db) under a key prefix of its own (deleted afterwards) and
// returns a tweak putting it in a test server, a way to open another store on the
// same keys (another node), and a client of that db with the prefix's ":" (a key is
// prefix + "{" + stream id + "}:" + name).
func redisTestStore(t *testing.T) (tweak func(*Deps), another func() cart.Store, rdb *redis.Client, prefix string) {
	ctx := context.Background()
	url := cmp.Or(os.Getenv("LIVECART_TEST_REDIS_URL"), "redis://127.0.0.1:6379/5")
	prefix = "unitmetrics-" + uuid.NewString()[:8]
	open := func() cart.Store {
		st, err := cart.OpenRedis(ctx, url, cart.RedisOptions{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb = redis.NewClient(opts)
	t.Cleanup(func() {
		defer rdb.Close()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	return func(d *Deps) { d.Store = open() }, open, rdb, prefix + ":"
}

// scrape returns /metrics as series → value ("name{labels}" as written, labels sorted).
func (e *testEnv) scrape() map[string]string {
	e.t.Helper()
	resp, raw := e.do("GET", "/metrics", "", nil)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET /metrics: got %d, want 200; body %s", resp.StatusCode, raw)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		if l := sc.Text(); !strings.HasPrefix(l, "#") {
			if i := strings.LastIndexByte(l, ' '); i > 0 {
				out[l[:i]] = l[i+1:]
			}
		}
	}
	return out
}

func saleSeries(s cart.Sale, state string) string {
	return fmt.Sprintf(`livecart_sale_units{sale_id=%q,state=%q,stream_id=%q}`, s.ID, state, s.StreamID)
}

func productSeries(p cart.Product, state string) string {
	return fmt.Sprintf(`livecart_product_units{product_id=%q,state=%q,stream_id=%q}`, p.ID, state, p.StreamID)
}

func productInvariantSeries(p cart.Product) string {
	return fmt.Sprintf(`livecart_product_invariant_ok{product_id=%q,stream_id=%q}`, p.ID, p.StreamID)
}

func invariantSeries(s cart.Sale) string {
	return fmt.Sprintf(`livecart_sale_invariant_ok{sale_id=%q,stream_id=%q}`, s.ID, s.StreamID)
}

// checkUnits: the scrape shows the sale's and product's numbers as GET answers them
// (the store's), and want (quantity, remaining, held, sold, returned / stock, held, sold).
func (e *testEnv) checkUnits(m map[string]string, sale cart.Sale, p cart.Product, wantSale [5]int, wantProduct [3]int) {
	e.t.Helper()
	resp, raw := e.do("GET", "/api/sales/"+sale.ID, "", nil)
	e.expect(resp, raw, http.StatusOK, "", &sale)
	resp, raw = e.do("GET", "/api/products/"+p.ID, e.token(auth.RoleCreator, "alice"), nil)
	e.expect(resp, raw, http.StatusOK, "", &p)
	if got := [5]int{sale.Quantity, sale.Remaining, sale.Held, sale.Sold, sale.Returned}; got != wantSale {
		e.t.Fatalf("sale from GET: got %v, want %v", got, wantSale)
	}
	if got := [3]int{p.Stock, p.Held, p.Sold}; got != wantProduct {
		e.t.Fatalf("product from GET: got %v, want %v", got, wantProduct)
	}
	for i, state := range []string{"quantity", "remaining", "held", "sold", "returned"} {
		if got, want := m[saleSeries(sale, state)], fmt.Sprint(wantSale[i]); got != want {
			e.t.Errorf("%s: got %q, want %s", saleSeries(sale, state), got, want)
		}
	}
	for i, state := range []string{"stock", "held", "sold"} {
		if got, want := m[productSeries(p, state)], fmt.Sprint(wantProduct[i]); got != want {
			e.t.Errorf("%s: got %q, want %s", productSeries(p, state), got, want)
		}
	}
	if got := m[invariantSeries(sale)]; got != "1" {
		e.t.Errorf("%s: got %q, want 1", invariantSeries(sale), got)
	}
	// The shop's product: 10 put in, the sale's 5 in sales.
	for state, want := range map[string]string{"in_sales": "5", "put_in": "10"} {
		if got := m[productSeries(p, state)]; got != want {
			e.t.Errorf("%s: got %q, want %s", productSeries(p, state), got, want)
		}
	}
	if got := m[productInvariantSeries(p)]; got != "1" {
		e.t.Errorf("%s: got %q, want 1", productInvariantSeries(p), got)
	}
}

// TestUnitMetrics: after holds and a checkout, /metrics has the store's units of the
// sale and product changed here, and the sale's invariant holds; on Redis, units held
// through another node (its own Server and Service on the same keys) show in this
// node's scrape.
func TestUnitMetrics(t *testing.T) {
	for _, store := range []string{"bolt", "redis"} {
		t.Run(store, func(t *testing.T) {
			var (
				another func() cart.Store
				tweaks  []func(*Deps)
				rdb     *redis.Client
				prefix  string
			)
			if store == "redis" {
				var tw func(*Deps)
				tw, another, rdb, prefix = redisTestStore(t)
				tweaks = append(tweaks, tw)
			}
			e := newTestEnv(t, tweaks...)
			sh := e.shop() // product stock 10, sale of 5 (limit 2)
			bob, carol := e.token(auth.RoleViewer, "bob"), e.token(auth.RoleViewer, "carol")
			var h cart.Hold
			resp, raw := e.do("POST", "/api/cart/items", bob, map[string]any{"sale_id": sh.sale.ID, "quantity": 2})
			e.expect(resp, raw, http.StatusCreated, "", &h)
			resp, raw = e.do("POST", "/api/cart/items", carol, map[string]any{"sale_id": sh.sale.ID, "quantity": 1})
			e.expect(resp, raw, http.StatusCreated, "", &h)
			resp, raw = e.do("POST", "/api/cart/items", carol, map[string]any{"product_id": sh.product.ID, "quantity": 3})
			e.expect(resp, raw, http.StatusCreated, "", &h)
			resp, raw = e.doHeaders("POST", "/api/checkout", bob, nil, "Idempotency-Key", "k1")
			e.expect(resp, raw, http.StatusCreated, "", nil)
			e.checkUnits(e.scrape(), sh.sale, sh.product, [5]int{5, 2, 1, 2, 0}, [3]int{2, 3, 0})
			if another == nil {
				return
			}
			// Node B, on the same Redis keys: its holds are news to node A's Service.
			b := newTestEnv(t, func(d *Deps) { d.Store = another() }) // same auth secret
			dave := e.token(auth.RoleViewer, "dave")
			resp, raw = b.do("POST", "/api/cart/items", dave, map[string]any{"sale_id": sh.sale.ID, "quantity": 2})
			b.expect(resp, raw, http.StatusCreated, "", &h)
			resp, raw = b.do("POST", "/api/cart/items", dave, map[string]any{"product_id": sh.product.ID, "quantity": 1})
			b.expect(resp, raw, http.StatusCreated, "", &h)
			e.checkUnits(e.scrape(), sh.sale, sh.product, [5]int{5, 0, 3, 2, 0}, [3]int{1, 4, 0})

			// A unit the store's numbers lost: the invariant says 0.
			pk := prefix + "{" + sh.st.ID + "}:p:" + sh.product.ID
			if err := rdb.HIncrBy(context.Background(), pk, "stock", -1).Err(); err != nil {
				t.Fatal(err)
			}
			m := e.scrape()
			if got := m[productInvariantSeries(sh.product)]; got != "0" {
				t.Errorf("a unit lost from the stock: %s got %q, want 0", productInvariantSeries(sh.product), got)
			}
			if got := m[productSeries(sh.product, "stock")]; got != "0" {
				t.Errorf("a unit lost from the stock: stock got %q, want 0", got)
			}
			// A product stored without its units put in (an older version): no
			// invariant, no put_in, the other series as before.
			if err := rdb.HDel(context.Background(), prefix+"{"+sh.st.ID+"}:putin", sh.product.ID).Err(); err != nil {
				t.Fatal(err)
			}
			m = e.scrape()
			for _, k := range []string{productInvariantSeries(sh.product), productSeries(sh.product, "put_in")} {
				if got, ok := m[k]; ok {
					t.Errorf("units put in unknown: %s got %q, want no series", k, got)
				}
			}
			if got := m[productSeries(sh.product, "held")]; got != "4" {
				t.Errorf("units put in unknown: held got %q, want 4", got)
			}
		})
	}
}

// TestUnitMetricsForgetAndOutage: an ended sale stays in the gauges for a while after
// its last change here, then drops out; a store that fails leaves the unit series out
// of a scrape that still answers 200 with the other metrics.
func TestUnitMetricsForgetAndOutage(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newTestEnv(t, func(d *Deps) { d.Now = clock })
	sh := e.shop()
	resp, raw := e.do("POST", "/api/sales/"+sh.sale.ID+"/stop", e.token(auth.RoleCreator, "alice"), nil)
	e.expect(resp, raw, http.StatusOK, "", nil)
	if got := e.scrape()[saleSeries(sh.sale, "returned")]; got != "5" {
		t.Fatalf("ended sale's returned: got %q, want 5", got)
	}
	mu.Lock()
	now = now.Add(endedSaleKept + time.Second)
	mu.Unlock()
	e.scrape() // the last scrape showing it
	m := e.scrape()
	if got, ok := m[saleSeries(sh.sale, "returned")]; ok {
		t.Fatalf("ended sale %s after %v: got %q, want no series", sh.sale.ID, endedSaleKept, got)
	}
	if got := m[productSeries(sh.product, "stock")]; got != "10" {
		t.Fatalf("product stock: got %q, want 10 (a product stays)", got)
	}

	e.store.Close()
	m = e.scrape()
	if got, ok := m[productSeries(sh.product, "stock")]; ok {
		t.Fatalf("store closed: got product stock %q, want no series", got)
	}
	if got := m[`livecart_http_requests_total{code="201",route="POST /api/streams/{sid}/sales"}`]; got != "1" {
		t.Fatalf("store closed: got sales created %q, want 1 (the other metrics stay)", got)
	}
}

// TestRecentUnitsBounded: a Service remembers at most cart.RecentMax products, the
// most recently changed ones.
func TestRecentUnitsBounded(t *testing.T) {
	e := newTestEnv(t)
	st := e.createStream("alice")
	owner := e.token(auth.RoleCreator, "alice")
	var last cart.Product
	for i := 0; i < cart.RecentMax+20; i++ {
		resp, raw := e.do("POST", "/api/streams/"+st.ID+"/products", owner,
			map[string]any{"sku": fmt.Sprint("S", i), "title": "T", "price_cents": 100, "currency": "EUR", "stock": 1})
		e.expect(resp, raw, http.StatusCreated, "", &last)
	}
	_, products := e.web.deps.Commerce.RecentUnits()
	if len(products) != cart.RecentMax {
		t.Fatalf("recent products: got %d, want %d", len(products), cart.RecentMax)
	}
	m := e.scrape()
	n := 0
	for k := range m {
		if strings.HasPrefix(k, "livecart_product_units{") && strings.Contains(k, `state="stock"`) {
			n++
		}
	}
	if n != cart.RecentMax {
		t.Fatalf("product stock series: got %d, want %d", n, cart.RecentMax)
	}
	if got := m[productSeries(last, "stock")]; got != "1" {
		t.Fatalf("newest product's stock: got %q, want 1", got)
	}
}

// TestUnitMetricsOlderFile: on a data file written before the units put in were kept
// (the embedded store's layout fixture), a product changed here has its units series
// and no invariant (unknown, never a wrong 0), and a product created here has both.
func TestUnitMetricsOlderFile(t *testing.T) {
	gz, err := os.ReadFile(filepath.Join("..", "cart", "testdata", "bolt-layout3.db.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "older.db")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := cart.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := newTestEnv(t, func(d *Deps) { d.Store = st })
	// The fixture's product of 5 units: 1 sold, 3 held until 2026-12-01 (a cart
	// sweeps them back first), now 1 held here.
	const sid, older = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000003"
	zoe := e.token(auth.RoleViewer, "zoe")
	resp, body := e.do("GET", "/api/cart", zoe, nil)
	e.expect(resp, body, http.StatusOK, "", nil)
	var h cart.Hold
	resp, body = e.do("POST", "/api/cart/items", zoe, map[string]any{"product_id": older, "quantity": 1})
	e.expect(resp, body, http.StatusCreated, "", &h)
	var p cart.Product
	resp, body = e.do("POST", "/api/streams/"+sid+"/products", e.token(auth.RoleAdmin, "root"),
		map[string]any{"sku": "N", "title": "new", "price_cents": 100, "currency": "EUR", "stock": 7})
	e.expect(resp, body, http.StatusCreated, "", &p)
	m := e.scrape()
	old := cart.Product{ID: older, StreamID: sid}
	for state, want := range map[string]string{"stock": "3", "held": "1", "sold": "1", "in_sales": "0"} {
		if got := m[productSeries(old, state)]; got != want {
			t.Errorf("older product: %s got %q, want %s", productSeries(old, state), got, want)
		}
	}
	for _, k := range []string{productInvariantSeries(old), productSeries(old, "put_in")} {
		if got, ok := m[k]; ok {
			t.Errorf("older product: %s got %q, want no series", k, got)
		}
	}
	if got := m[productInvariantSeries(p)]; got != "1" {
		t.Errorf("new product: %s got %q, want 1", productInvariantSeries(p), got)
	}
	if got := m[productSeries(p, "put_in")]; got != "7" {
		t.Errorf("new product: put_in got %q, want 7", got)
	}
}
