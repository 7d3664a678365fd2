package cart

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// layoutNow is the clock of the layout fixture.
var layoutNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// Ids of the layout fixture (UUIDs, fixed so the test can name them).
const (
	lfStream  = "00000000-0000-4000-8000-000000000001"
	lfProduct = "00000000-0000-4000-8000-000000000002" // stock 20, with a sale
	lfPlain   = "00000000-0000-4000-8000-000000000003" // stock 5, sold without a sale
	lfSale    = "00000000-0000-4000-8000-000000000004" // 10 units, 2 per buyer
)

// layoutUsers are the fixture's buyers: "a" and "a\x00b" share a prefix up to the
// separator of the old user-keyed indexes.
var layoutUsers = []string{"alice", "bob", "a", "a\x00b", "ünï"}

func lfID(n int) string {
	return "00000000-0000-7000-8000-0000000001" + string(rune('0'+n/10)) + string(rune('0'+n%10))
}

// writeLayoutFixture makes the fixture's state through the Store API only, so the same
// calls build it on any version of the store: testdata/bolt-layout1.db.gz was written
// by this function on main at dd8cc2e (the user-keyed buckets user_holds, user_orders
// and idem, keyed by the user id and "\x00").
//
// After it: alice has ordered h01 (sale) and h02 (plain) as o01 with key "k1" and
// holds h03 (sale, expires in 10 min); bob has ordered h04 (2 units of the sale) as
// o02 with key "k1" and holds h05 (plain, expires in 1 min); "a" holds h06 (plain);
// "a\x00b" has ordered h08 (sale) as o03 with key "k2" and holds h07 (plain); ünï
// holds h09 (sale). Sale: 10 units, sold 4, held 2, remaining 4.
func writeLayoutFixture(t testing.TB, st Store) {
	ctx, now := context.Background(), layoutNow
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.CreateStream(ctx, Stream{ID: lfStream, Title: "layout", CreatorID: "c", Status: StreamLive, CreatedAt: now}))
	_, err := st.CreateProduct(ctx, Product{ID: lfProduct, StreamID: lfStream, SKU: "A", Title: "a", PriceCents: 100, Currency: "EUR", Stock: 20}, 0)
	must(err)
	_, err = st.CreateProduct(ctx, Product{ID: lfPlain, StreamID: lfStream, SKU: "B", Title: "b", PriceCents: 300, Currency: "EUR", Stock: 5}, 0)
	must(err)
	_, _, err = st.CreateSale(ctx, Sale{ID: lfSale, StreamID: lfStream, ProductID: lfProduct, PriceCents: 50,
		Quantity: 10, PerUserLimit: 2, StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour)}, now, 0)
	must(err)
	hold := func(n int, user, productID, saleID string, q int, ttl time.Duration) {
		t.Helper()
		_, _, err := st.HoldUnits(ctx, HoldRequest{ID: lfID(n), UserID: user, ProductID: productID, SaleID: saleID,
			Quantity: q, ExpiresAt: now.Add(ttl)}, now)
		must(err)
	}
	checkout := func(n int, user, key string) {
		t.Helper()
		_, err := st.Checkout(ctx, CheckoutRequest{OrderID: lfID(50 + n), UserID: user, IdempotencyKey: key, Fingerprint: "fp-" + key}, now)
		must(err)
	}
	hold(1, "alice", "", lfSale, 1, time.Hour)
	hold(2, "alice", lfPlain, "", 1, time.Hour)
	checkout(1, "alice", "k1")
	hold(3, "alice", "", lfSale, 1, 10*time.Minute)
	hold(4, "bob", "", lfSale, 2, time.Hour)
	checkout(2, "bob", "k1")
	hold(5, "bob", lfPlain, "", 1, time.Minute)
	hold(6, "a", lfPlain, "", 1, time.Hour)
	hold(8, "a\x00b", "", lfSale, 1, time.Hour)
	checkout(3, "a\x00b", "k2")
	hold(7, "a\x00b", lfPlain, "", 1, time.Hour)
	hold(9, "ünï", "", lfSale, 1, time.Hour)
}

// TestLayoutFixtureWriter writes the fixture to $LIVECART_WRITE_LAYOUT_FIXTURE (by hand
// only: see writeLayoutFixture).
func TestLayoutFixtureWriter(t *testing.T) {
	path := os.Getenv("LIVECART_WRITE_LAYOUT_FIXTURE")
	if path == "" {
		t.Skip("LIVECART_WRITE_LAYOUT_FIXTURE not set")
	}
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	writeLayoutFixture(t, st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkLayoutFixture checks a store holding writeLayoutFixture's state and then uses it
// (so every user-keyed entry is read and written through): carts, order lists,
// idempotency replays, per-user counts, removal and expiry of holds, forgetting keys.
func checkLayoutFixture(t *testing.T, st Store) {
	t.Helper()
	ctx, now := context.Background(), layoutNow
	carts := func(want map[string][]int) {
		t.Helper()
		for _, u := range layoutUsers {
			hs, err := st.ListHolds(ctx, u, now)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, h := range hs {
				got = append(got, h.ID)
				if h.UserID != u {
					t.Errorf("%q's cart has %s of %q", u, h.ID, h.UserID)
				}
			}
			var w []string
			for _, n := range want[u] {
				w = append(w, lfID(n))
			}
			if !slices.Equal(got, w) {
				t.Errorf("%q's cart: %v, want %v", u, got, w)
			}
		}
	}
	orders := func(want map[string][]int) {
		t.Helper()
		for _, u := range layoutUsers {
			os, err := st.ListOrders(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range os {
				got = append(got, o.ID)
			}
			var w []string
			for _, n := range want[u] {
				w = append(w, lfID(n))
			}
			if !slices.Equal(got, w) {
				t.Errorf("%q's orders: %v, want %v", u, got, w)
			}
		}
	}
	numbers := func(remaining, held, sold, stock, pHeld, pSold int) {
		t.Helper()
		s, err := st.GetSale(ctx, lfSale)
		if err != nil {
			t.Fatal(err)
		}
		p, err := st.GetProduct(ctx, lfPlain)
		if err != nil {
			t.Fatal(err)
		}
		if s.Remaining != remaining || s.Held != held || s.Sold != sold || p.Stock != stock || p.Held != pHeld || p.Sold != pSold {
			t.Errorf("sale remaining/held/sold %d/%d/%d, plain product stock/held/sold %d/%d/%d; want %d/%d/%d, %d/%d/%d",
				s.Remaining, s.Held, s.Sold, p.Stock, p.Held, p.Sold, remaining, held, sold, stock, pHeld, pSold)
		}
	}
	checkout := func(n int, user, key, fp string) (Order, bool, error) {
		res, err := st.Checkout(ctx, CheckoutRequest{OrderID: lfID(n), UserID: user, IdempotencyKey: key, Fingerprint: fp}, now)
		return res.Order, res.Created, err
	}
	hold := func(n int, user string, q int) error {
		_, _, err := st.HoldUnits(ctx, HoldRequest{ID: lfID(n), UserID: user, SaleID: lfSale, Quantity: q, ExpiresAt: now.Add(time.Hour)}, now)
		return err
	}

	carts(map[string][]int{"alice": {3}, "bob": {5}, "a": {6}, "a\x00b": {7}, "ünï": {9}})
	orders(map[string][]int{"alice": {51}, "bob": {52}, "a\x00b": {53}})
	numbers(4, 2, 4, 1, 3, 1)
	// The idempotency keys replay their orders; another body conflicts.
	for _, c := range []struct {
		user, key string
		order     int
	}{{"alice", "k1", 51}, {"bob", "k1", 52}, {"a\x00b", "k2", 53}} {
		o, created, err := checkout(90, c.user, c.key, "fp-"+c.key)
		if err != nil || created || o.ID != lfID(c.order) {
			t.Errorf("%q replays key %s: order %s created %v err %v; want %s", c.user, c.key, o.ID, created, err, lfID(c.order))
		}
		if _, _, err := checkout(90, c.user, c.key, "other"); !errors.Is(err, ErrConflict) {
			t.Errorf("%q's key %s with another body: %v, want conflict", c.user, c.key, err)
		}
	}
	// Per-user counts (limit 2): alice 1 bought + 1 held, bob 2 bought, "a\x00b" 1, ünï 1, "a" 0.
	for _, u := range []string{"alice", "bob"} {
		if err := hold(60, u, 1); !errors.Is(err, ErrLimitExceeded) {
			t.Errorf("%q holds a third unit: %v, want limit_exceeded", u, err)
		}
	}
	if err := hold(61, "a\x00b", 2); !errors.Is(err, ErrLimitExceeded) {
		t.Errorf("\"a\\x00b\" holds 2 more: %v, want limit_exceeded", err)
	}
	if err := hold(62, "a", 2); err != nil {
		t.Errorf("\"a\" holds 2: %v", err)
	}
	if err := hold(63, "ünï", 1); err != nil {
		t.Errorf("ünï holds 1 more: %v", err)
	}
	numbers(1, 5, 4, 1, 3, 1)
	// Removing a migrated hold deletes its cart entry and lowers the count.
	if _, err := st.RemoveHold(ctx, "alice", lfID(3), now); err != nil {
		t.Fatal(err)
	}
	if err := hold(64, "alice", 1); err != nil {
		t.Errorf("alice holds again after removing h03: %v", err)
	}
	// Checking out a cart with a migrated hold empties it.
	if o, created, err := checkout(70, "ünï", "k9", "fp"); err != nil || !created || len(o.Items) != 2 {
		t.Errorf("ünï checks out h09 and h63: %+v created %v err %v", o, created, err)
	}
	carts(map[string][]int{"alice": {64}, "bob": {5}, "a": {6, 62}, "a\x00b": {7}})
	orders(map[string][]int{"alice": {51}, "bob": {52}, "a\x00b": {53}, "ünï": {70}})
	// bob's h05 expires after a minute: its unit goes back, it stays in the cart.
	if n, _, err := st.ReleaseExpiredHolds(ctx, now.Add(2*time.Minute), 100); err != nil || n != 1 {
		t.Errorf("released %d holds (%v), want 1 (h05)", n, err)
	}
	numbers(1, 3, 6, 2, 2, 1)
	if _, err := st.RemoveHold(ctx, "bob", lfID(5), now); err != nil {
		t.Fatal(err)
	}
	carts(map[string][]int{"alice": {64}, "a": {6, 62}, "a\x00b": {7}})
	// After 24 h the keys are forgotten: alice's "k1" orders her cart anew.
	later := now.Add(IdempotencyTTL + time.Hour)
	if _, _, err := st.ReleaseExpiredHolds(ctx, later, 100); err != nil {
		t.Fatal(err)
	}
	if bs, ok := st.(*BoltStore); ok { // every key forgotten: none left on file or in memory
		bs.db.View(func(tx *bolt.Tx) error {
			n := tx.Bucket(bucketIdemExpiry).Stats().KeyN
			tx.Bucket(bucketUsers).ForEach(func(k, _ []byte) error {
				if kind, _ := userKeyKind(k); kind == kindIdem {
					n++
				}
				return nil
			})
			if n != 0 || len(bs.idem) != 0 {
				t.Errorf("%d idempotency entries on file, %d in the index after 25 h; want none", n, len(bs.idem))
			}
			return nil
		})
	}
	res, err := st.Checkout(ctx, CheckoutRequest{OrderID: lfID(71), UserID: "alice", IdempotencyKey: "k1", Fingerprint: "fp-k1"}, later)
	if err == nil || !errors.Is(err, ErrHoldExpired) || res.Created {
		t.Errorf("alice's k1 after 25 h: created %v err %v; want a new checkout (her hold has expired by then)", res.Created, err)
	}
}

// openLayoutFixture unpacks testdata/name (gzip) into a temporary file and returns its
// path.
func openLayoutFixture(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "layout.db")
	gz, err := os.ReadFile(filepath.Join("testdata", name))
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
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// layoutOf describes a file by what the layouts tell apart: its buckets, the kinds of
// the entries in users (sorted), and how many idem_expiry entries have a value (a record).
func layoutOf(t *testing.T, path string) (buckets []string, userKinds string, idemRecords int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		tx.ForEach(func(name []byte, _ *bolt.Bucket) error { buckets = append(buckets, string(name)); return nil })
		if b := tx.Bucket(bucketUsers); b != nil {
			b.ForEach(func(k, _ []byte) error {
				if kind, ok := userKeyKind(k); ok && !strings.ContainsRune(userKinds, rune(kind)) {
					userKinds += string(rune(kind))
				}
				return nil
			})
			kinds := []byte(userKinds)
			slices.Sort(kinds)
			userKinds = string(kinds)
		}
		if b := tx.Bucket(bucketIdemExpiry); b != nil {
			b.ForEach(func(_, v []byte) error {
				var rec boltIdem
				if len(v) > 0 && unmarshalRecord(v, &rec) == nil && rec.OrderID != "" {
					idemRecords++
				}
				return nil
			})
		}
		return nil
	})
	return buckets, userKinds, idemRecords
}

// checkMigrated opens the fixture file at path twice (the second open has nothing to
// move): it then has this layout (order_log, no idempotency records in users, the
// fixture's three records in idem_expiry, neither carts nor user_sale) and the store answers exactly as a fresh store
// that went through the same calls, which checkLayoutFixture checks and exercises on
// both.
func checkMigrated(t *testing.T, path string) {
	for range 2 {
		st, err := OpenBolt(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		names, kinds, recs := layoutOf(t, path)
		if !slices.Contains(names, "order_log") || !slices.Contains(names, "users") || slices.Contains(names, "carts") ||
			slices.Contains(names, "user_sale") || strings.Trim(kinds, "o") != "" || recs != 3 {
			t.Fatalf("after opening: buckets %v, kinds in users %q, records in idem_expiry %d; want order_log, users, no carts or user_sale, kinds \"o\" (or none), 3 records",
				names, kinds, recs)
		}
	}
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t.Run("migrated", func(t *testing.T) { checkLayoutFixture(t, st) })
	t.Run("fresh", func(t *testing.T) {
		fresh := openTestBolt(t)
		writeLayoutFixture(t, fresh)
		checkLayoutFixture(t, fresh)
	})
}

// TestBoltMigratesLayout1 opens a file of the first layout (user_holds, user_orders and
// idem keyed by user id and "\x00", testdata/bolt-layout1.db.gz, written by main at
// dd8cc2e): it is moved through the second layout to this one (checkMigrated).
func TestBoltMigratesLayout1(t *testing.T) {
	path := openLayoutFixture(t, "bolt-layout1.db.gz")
	old := []string{"idem", "user_holds", "user_orders"}
	if names, _, _ := layoutOf(t, path); !slices.ContainsFunc(names, func(n string) bool { return slices.Contains(old, n) }) {
		t.Fatalf("the fixture has no bucket of the old layout: %v", names)
	}
	checkMigrated(t, path)
	if names, _, _ := layoutOf(t, path); slices.ContainsFunc(names, func(n string) bool { return slices.Contains(old, n) }) {
		t.Fatalf("after opening: buckets %v, want none of %v", names, old)
	}
}

// TestBoltMigratesLayout2 opens a file of the second layout (idempotency records in
// users, idem_expiry entries without values, no order_log; testdata/bolt-layout2.db.gz,
// written by main at 61c863d with writeLayoutFixture): checkMigrated.
func TestBoltMigratesLayout2(t *testing.T) {
	path := openLayoutFixture(t, "bolt-layout2.db.gz")
	if names, kinds, recs := layoutOf(t, path); slices.Contains(names, "order_log") || kinds != "io" || recs != 0 {
		t.Fatalf("the fixture is not of the second layout: buckets %v, kinds in users %q, records in idem_expiry %d", names, kinds, recs)
	}
	checkMigrated(t, path)
}

// TestBoltMigratesLayout3 opens a file of the third layout's predecessor (carts and
// user_sale, the user-keyed buckets a hold wrote; testdata/bolt-layout3.db.gz, written
// by main at 70a2478 with writeLayoutFixture): checkMigrated (the carts in their order,
// the per-user counts rebuilt from the holds and orders).
func TestBoltMigratesLayout3(t *testing.T) {
	path := openLayoutFixture(t, "bolt-layout3.db.gz")
	if names, kinds, recs := layoutOf(t, path); !slices.Contains(names, "order_log") || !slices.Contains(names, "carts") ||
		!slices.Contains(names, "user_sale") || strings.Trim(kinds, "o") != "" || recs != 3 {
		t.Fatalf("the fixture is not of the layout before the third: buckets %v, kinds in users %q, records in idem_expiry %d", names, kinds, recs)
	}
	checkMigrated(t, path)
}
