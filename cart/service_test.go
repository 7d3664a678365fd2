package cart

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// recorder is an Emitter that keeps the events it got.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Emit(_ context.Context, ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *recorder) types() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var t []string
	for _, e := range r.events {
		t = append(t, e.Type)
	}
	r.events = nil
	return strings.Join(t, ",")
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func newTestService(t *testing.T) (*Service, *recorder, *clock, string) {
	st := openTestBolt(t)
	rec := &recorder{}
	clk := &clock{t: time.Date(2026, 11, 24, 4, 0, 0, 0, time.UTC)}
	svc := NewService(st, rec, ServiceConfig{MaxPins: 2}, clk.Now, nil)
	sid := uuid.NewString()
	if err := st.CreateStream(context.Background(), Stream{ID: sid, CreatorID: "c", Status: StreamLive, CreatedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	return svc, rec, clk, sid
}

func ptr[T any](v T) *T { return &v }

func TestServiceValidation(t *testing.T) {
	svc, _, _, sid := newTestService(t)
	ctx, a := context.Background(), Actor{ID: "c", Role: "creator"}
	good := NewProduct{SKU: "s", Title: "t", PriceCents: ptr[int64](100), Currency: "EUR", Stock: ptr(10)}
	p, err := svc.CreateProduct(ctx, a, sid, good)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		fn   func() error
		want error
	}{
		{"negative price", func() error {
			in := good
			in.PriceCents = ptr[int64](-1)
			_, err := svc.CreateProduct(ctx, a, sid, in)
			return err
		}, ErrBadRequest},
		{"missing price", func() error {
			in := good
			in.PriceCents = nil
			_, err := svc.CreateProduct(ctx, a, sid, in)
			return err
		}, ErrBadRequest},
		{"lower-case currency", func() error {
			in := good
			in.Currency = "eur"
			_, err := svc.CreateProduct(ctx, a, sid, in)
			return err
		}, ErrBadRequest},
		{"stock too big", func() error {
			in := good
			in.Stock = ptr(1_000_001)
			_, err := svc.CreateProduct(ctx, a, sid, in)
			return err
		}, ErrBadRequest},
		{"negative stock", func() error { in := good; in.Stock = ptr(-1); _, err := svc.CreateProduct(ctx, a, sid, in); return err }, ErrBadRequest},
		{"no title", func() error { in := good; in.Title = " "; _, err := svc.CreateProduct(ctx, a, sid, in); return err }, ErrBadRequest},
		{"other currency", func() error {
			in := good
			in.Currency = "USD"
			_, err := svc.CreateProduct(ctx, a, sid, in)
			return err
		}, ErrConflict},
		{"sale quantity 0", func() error {
			_, err := svc.CreateSale(ctx, a, sid, NewSale{ProductID: p.ID, PriceCents: ptr[int64](1), Quantity: ptr(0), DurationS: ptr[int64](60)})
			return err
		}, ErrBadRequest},
		{"sale limit over quantity", func() error {
			_, err := svc.CreateSale(ctx, a, sid, NewSale{ProductID: p.ID, PriceCents: ptr[int64](1), Quantity: ptr(2), PerUserLimit: ptr(3), DurationS: ptr[int64](60)})
			return err
		}, ErrBadRequest},
		{"sale duration 0", func() error {
			_, err := svc.CreateSale(ctx, a, sid, NewSale{ProductID: p.ID, PriceCents: ptr[int64](1), Quantity: ptr(2), DurationS: ptr[int64](0)})
			return err
		}, ErrBadRequest},
		{"sale product not a uuid", func() error {
			_, err := svc.CreateSale(ctx, a, sid, NewSale{ProductID: "x", PriceCents: ptr[int64](1), Quantity: ptr(2), DurationS: ptr[int64](60)})
			return err
		}, ErrNotFound},
		{"sale over stock", func() error {
			_, err := svc.CreateSale(ctx, a, sid, NewSale{ProductID: p.ID, PriceCents: ptr[int64](1), Quantity: ptr(11), DurationS: ptr[int64](60)})
			return err
		}, ErrConflict},
		{"hold quantity 0", func() error {
			_, err := svc.AddToCart(ctx, "u", NewItem{ProductID: p.ID, Quantity: ptr(0)})
			return err
		}, ErrBadRequest},
		{"hold quantity 101", func() error {
			_, err := svc.AddToCart(ctx, "u", NewItem{ProductID: p.ID, Quantity: ptr(101)})
			return err
		}, ErrBadRequest},
		{"hold both ids", func() error {
			_, err := svc.AddToCart(ctx, "u", NewItem{ProductID: p.ID, SaleID: p.ID, Quantity: ptr(1)})
			return err
		}, ErrBadRequest},
		{"hold bad id", func() error { _, err := svc.AddToCart(ctx, "u", NewItem{SaleID: "nope", Quantity: ptr(1)}); return err }, ErrNotFound},
		{"checkout without key", func() error { _, _, err := svc.Checkout(ctx, "u", "", CheckoutInput{}); return err }, ErrBadRequest},
		{"checkout long key", func() error {
			_, _, err := svc.Checkout(ctx, "u", strings.Repeat("k", 256), CheckoutInput{})
			return err
		}, ErrBadRequest},
		{"checkout bad hold id", func() error {
			_, _, err := svc.Checkout(ctx, "u", "k", CheckoutInput{HoldIDs: []string{"x"}})
			return err
		}, ErrNotFound},
		{"checkout empty cart", func() error { _, _, err := svc.Checkout(ctx, "u", "k", CheckoutInput{}); return err }, ErrConflict},
	} {
		if err := tc.fn(); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if got, _ := svc.GetProduct(ctx, p.ID); got.Stock != 10 || got.Held != 0 {
		t.Fatalf("product after bad input: got stock %d held %d, want 10 0", got.Stock, got.Held)
	}
	if list, _ := svc.ListProducts(ctx, sid, true); len(list) != 1 {
		t.Fatalf("products after bad input: got %d, want 1", len(list))
	}
}

func TestServiceEventsAndAudit(t *testing.T) {
	svc, rec, clk, sid := newTestService(t)
	ctx, a := context.Background(), Actor{ID: "c", Role: "creator"}
	p, _ := svc.CreateProduct(ctx, a, sid, NewProduct{SKU: "s", Title: "t", PriceCents: ptr[int64](100), Currency: "EUR", Stock: ptr(10)})
	if got := rec.types(); got != "product" {
		t.Fatalf("create product: got events %q, want product", got)
	}
	svc.Pin(ctx, a, sid, p.ID)
	svc.Pin(ctx, a, sid, p.ID) // already pinned: nothing
	if got := rec.types(); got != "pin" {
		t.Fatalf("pin: got events %q, want pin", got)
	}
	svc.SetHidden(ctx, Actor{ID: "m", Role: "moderator"}, p.ID, true)
	if got := rec.types(); got != "product,unpin" {
		t.Fatalf("hide pinned: got events %q, want product,unpin", got)
	}
	if list, err := svc.ListProducts(ctx, sid, false); err != nil || len(list) != 0 {
		t.Fatalf("public list with hidden: got %d %v, want 0", len(list), err)
	}
	svc.SetHidden(ctx, a, p.ID, false)
	sale, err := svc.CreateSale(ctx, a, sid, NewSale{ProductID: p.ID, PriceCents: ptr[int64](50), Quantity: ptr(4), DurationS: ptr[int64](600), StartsInS: ptr[int64](10)})
	if err != nil || sale.Status != SaleScheduled || sale.PerUserLimit != 1 {
		t.Fatalf("CreateSale: got %+v %v", sale, err)
	}
	if got := rec.types(); got != "product,sale,product" {
		t.Fatalf("unhide + sale: got events %q", got)
	}
	clk.Advance(10 * time.Second)
	svc.Sweep(ctx)
	if got := rec.types(); got != "sale" {
		t.Fatalf("sale start: got events %q, want sale", got)
	}
	h, err := svc.AddToCart(ctx, "u", NewItem{SaleID: sale.ID, Quantity: ptr(1)})
	if err != nil || !h.ExpiresAt.Equal(clk.Now().Add(2*time.Minute)) || h.UnitPriceCents != 50 {
		t.Fatalf("AddToCart: got %+v %v, want 2m sale hold at 50", h, err)
	}
	rec.mu.Lock()
	ev := rec.events[0]
	rec.mu.Unlock()
	if sd, ok := ev.Data.(StockData); !ok || ev.Type != EventStock || sd.SaleID != sale.ID || sd.Remaining != 3 {
		t.Fatalf("hold event: got %+v, want stock remaining 3", ev)
	}
	rec.types()
	clk.Advance(2 * time.Minute)
	c, err := svc.Cart(ctx, "u")
	if err != nil || len(c.Items) != 1 || !c.Items[0].Expired || c.TotalCents != 0 {
		t.Fatalf("Cart after expiry: got %+v %v", c, err)
	}
	if got, _ := svc.GetSale(ctx, sale.ID); got.Remaining != 4 {
		t.Fatalf("units back when the cart says expired: got remaining %d, want 4", got.Remaining)
	}
	if got := rec.types(); got != "stock" {
		t.Fatalf("expiry: got events %q, want stock", got)
	}
	if _, err := svc.StopSale(ctx, a, sale.ID); err != nil {
		t.Fatal(err)
	}
	svc.StopSale(ctx, a, sale.ID)
	if got := rec.types(); got != "sale,stock,product" {
		t.Fatalf("stop: got events %q", got)
	}
	entries, _ := svc.Store().ListAudit(ctx, sid)
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	if got, want := strings.Join(actions, ","), "product_create,pin,hide,unhide,sale_create,sale_stop"; got != want {
		t.Fatalf("audit: got %s, want %s", got, want)
	}
}

func TestServiceCheckoutIdempotent(t *testing.T) {
	svc, _, _, sid := newTestService(t)
	ctx, a := context.Background(), Actor{ID: "c", Role: "creator"}
	p, _ := svc.CreateProduct(ctx, a, sid, NewProduct{SKU: "s", Title: "t", PriceCents: ptr[int64](100), Currency: "EUR", Stock: ptr(10)})
	h, _ := svc.AddToCart(ctx, "u", NewItem{ProductID: p.ID, Quantity: ptr(3)})
	o, created, err := svc.Checkout(ctx, "u", "key", CheckoutInput{})
	if err != nil || !created || o.TotalCents != 300 || o.ExpiredHoldIDs == nil {
		t.Fatalf("Checkout: got %+v created=%v %v", o, created, err)
	}
	o2, created, err := svc.Checkout(ctx, "u", "key", CheckoutInput{})
	if err != nil || created || o2.ID != o.ID {
		t.Fatalf("replay: got %s created=%v %v, want %s false", o2.ID, created, err, o.ID)
	}
	_, _, err = svc.Checkout(ctx, "u", "key", CheckoutInput{HoldIDs: []string{h.ID}})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("same key, other body: got %v, want conflict", err)
	}
}

// TestServiceRun: the background loop starts and ends sales by the clock, releases
// expired holds, and returns when its context ends.
func TestServiceRun(t *testing.T) {
	st := openTestBolt(t)
	rec := &recorder{}
	clk := &clock{t: time.Date(2026, 11, 24, 4, 0, 0, 0, time.UTC)}
	svc := NewService(st, rec, ServiceConfig{SweepInterval: 5 * time.Millisecond}, clk.Now, nil)
	ctx, a := context.Background(), Actor{ID: "c", Role: "creator"}
	sid := uuid.NewString()
	st.CreateStream(ctx, Stream{ID: sid, CreatorID: "c", Status: StreamLive, CreatedAt: clk.Now()})
	p, _ := svc.CreateProduct(ctx, a, sid, NewProduct{SKU: "s", Title: "t", PriceCents: ptr[int64](100), Currency: "EUR", Stock: ptr(10)})
	sale, _ := svc.CreateSale(ctx, a, sid, NewSale{ProductID: p.ID, PriceCents: ptr[int64](50), Quantity: ptr(4), DurationS: ptr[int64](60), StartsInS: ptr[int64](5)})
	rec.types()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- svc.Run(runCtx) }()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	clk.Advance(5 * time.Second)
	waitFor("sale start", func() bool { s, _ := st.GetSale(ctx, sale.ID); return s.Status == SaleActive })
	svc.AddToCart(ctx, "u", NewItem{SaleID: sale.ID, Quantity: ptr(1)})
	clk.Advance(2 * time.Minute)
	waitFor("sale end and hold release", func() bool {
		s, _ := st.GetSale(ctx, sale.ID)
		return s.Status == SaleEnded && s.Held == 0 && s.Returned == 4
	})
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if got := rec.types(); !strings.HasPrefix(got, "sale,stock") || !strings.Contains(got, "sale,stock,product") {
		t.Fatalf("events: got %q, want sale start, hold stock, then sale end with stock and product", got)
	}
}

// TestServiceCheckoutClearsExpired: after any checkout the cart lists no expired hold,
// also one outside the checkout's hold_ids or stream.
func TestServiceCheckoutClearsExpired(t *testing.T) {
	svc, _, clk, sid := newTestService(t)
	ctx, a := context.Background(), Actor{ID: "c", Role: "creator"}
	p, _ := svc.CreateProduct(ctx, a, sid, NewProduct{SKU: "s", Title: "t", PriceCents: ptr[int64](100), Currency: "EUR", Stock: ptr(10)})
	sale, _ := svc.CreateSale(ctx, a, sid, NewSale{ProductID: p.ID, PriceCents: ptr[int64](50), Quantity: ptr(4), DurationS: ptr[int64](3600)})
	if _, err := svc.AddToCart(ctx, "u", NewItem{SaleID: sale.ID, Quantity: ptr(1)}); err != nil { // 2m: expires first
		t.Fatal(err)
	}
	live, err := svc.AddToCart(ctx, "u", NewItem{ProductID: p.ID, Quantity: ptr(1)})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(3 * time.Minute)
	o, _, err := svc.Checkout(ctx, "u", "k", CheckoutInput{HoldIDs: []string{live.ID}})
	if err != nil || len(o.Items) != 1 {
		t.Fatalf("checkout: got %+v %v", o, err)
	}
	c, err := svc.Cart(ctx, "u")
	if err != nil || len(c.Items) != 0 {
		t.Fatalf("cart after checkout: got %+v %v, want empty (expired hold cleared)", c.Items, err)
	}
	if got, _ := svc.GetSale(ctx, sale.ID); got.Remaining != 4 || got.Held != 0 {
		t.Fatalf("sale: got remaining %d held %d, want 4 0", got.Remaining, got.Held)
	}
}

// fingerprint is the hex SHA-256 it always was (stored with every idempotency key: a
// change would make a retry after an upgrade a conflict), without its allocations.
func TestCheckoutFingerprintUnchanged(t *testing.T) {
	old := func(in CheckoutInput) string {
		h := sha256.New()
		h.Write([]byte(in.StreamID))
		if in.HoldIDs != nil {
			h.Write([]byte("\x00" + strings.Join(in.HoldIDs, ",")))
		}
		return hex.EncodeToString(h.Sum(nil))
	}
	id := "0190f3a4-1b2c-7d3e-8f40-123456789abc"
	many := make([]string, 1000)
	for i := range many {
		many[i] = id
	}
	for _, in := range []CheckoutInput{{}, {StreamID: id}, {HoldIDs: []string{}}, {HoldIDs: []string{id}}, {StreamID: id, HoldIDs: []string{id, "", "x"}},
		{StreamID: strings.Repeat("s", 200)}, {HoldIDs: many}, {StreamID: "\x00,", HoldIDs: []string{","}}} {
		if got, want := in.fingerprint(), old(in); got != want {
			t.Errorf("%.60v: %s, want %s", in, got, want)
		}
	}
	// The value of the usual body (no stream, no hold_ids), as stored before this change.
	if got := (CheckoutInput{}).fingerprint(); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("empty body: %s", got)
	}
	if n := testing.AllocsPerRun(100, func() { _ = CheckoutInput{StreamID: id}.fingerprint() }); n != 1 {
		t.Errorf("%v allocations, want 1 (the string)", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = CheckoutInput{}.fingerprint() }); n != 0 {
		t.Errorf("empty body: %v allocations, want 0 (hashed once)", n)
	}
}

// TestNewSalePriceMessages: a sale's price out of range names the bound it broke, as a
// product's does (a price over the cap said "must be ≥ 0").
func TestNewSalePriceMessages(t *testing.T) {
	q, d := 1, int64(60)
	for _, tc := range []struct {
		price int64
		want  string
	}{{-1, "price_cents must be ≥ 0"}, {2e12, "price_cents is too large"}} {
		p := tc.price
		err := NewSale{ProductID: uuid.NewString(), PriceCents: &p, Quantity: &q, DurationS: &d}.Validate()
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("price %d: got %v, want bad request %q", tc.price, err, tc.want)
		}
	}
}

// TestServiceCartTotalsPerCurrency: a cart holding products of two streams priced in
// different currencies has one total per currency (total_cents still adds them all,
// as API.md says); an expired hold counts in neither.
func TestServiceCartTotalsPerCurrency(t *testing.T) {
	svc, _, clk, sid := newTestService(t)
	ctx, a := context.Background(), Actor{ID: "c", Role: "creator"}
	sid2 := uuid.NewString()
	if err := svc.store.CreateStream(ctx, Stream{ID: sid2, CreatorID: "c", Status: StreamLive, CreatedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	eur, err := svc.CreateProduct(ctx, a, sid, NewProduct{SKU: "e", Title: "t", PriceCents: ptr[int64](1000), Currency: "EUR", Stock: ptr(10)})
	if err != nil {
		t.Fatal(err)
	}
	usd, err := svc.CreateProduct(ctx, a, sid2, NewProduct{SKU: "u", Title: "t", PriceCents: ptr[int64](700), Currency: "USD", Stock: ptr(10)})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range []NewItem{{ProductID: eur.ID, Quantity: ptr(2)}, {ProductID: usd.ID, Quantity: ptr(1)}, {ProductID: eur.ID, Quantity: ptr(1)}} {
		if _, err := svc.AddToCart(ctx, "u", it); err != nil {
			t.Fatal(err)
		}
	}
	c, err := svc.Cart(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	want := []CurrencyTotal{{"EUR", 3000}, {"USD", 700}}
	if c.TotalCents != 3700 || !slices.Equal(c.Totals, want) {
		t.Fatalf("cart: total_cents %d totals %+v, want 3700 and %+v", c.TotalCents, c.Totals, want)
	}
	clk.Advance(time.Hour) // every hold expires
	if c, err = svc.Cart(ctx, "u"); err != nil || c.TotalCents != 0 || len(c.Totals) != 0 || c.Totals == nil {
		t.Fatalf("cart of expired holds: total_cents %d totals %#v (%v), want 0 and []", c.TotalCents, c.Totals, err)
	}
}
