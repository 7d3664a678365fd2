package cart

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// holdFixture is an index fixture with a sale of 100 units, 3 per buyer.
type holdFixture struct {
	*indexFixture
	sale string
}

func newHoldFixture(t *testing.T) *holdFixture {
	f := &holdFixture{indexFixture: newIndexFixture(t, defaultTuning)}
	p, err := f.st.GetProduct(f.ctx, f.product)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := f.st.CreateSale(f.ctx, Sale{ID: uuid.NewString(), StreamID: p.StreamID, ProductID: p.ID, PriceCents: 1,
		Quantity: 100, PerUserLimit: 3, StartsAt: f.now.Add(-time.Minute), EndsAt: f.now.Add(time.Hour)}, f.now, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.sale = s.ID
	return f
}

func (f *holdFixture) hold(user string, q int, ttl time.Duration) (string, error) {
	id := newID()
	_, _, err := f.st.HoldUnits(f.ctx, HoldRequest{ID: id, UserID: user, SaleID: f.sale, Quantity: q, ExpiresAt: f.now.Add(ttl)}, f.now)
	return id, err
}

// cart checks the user's cart (ids, oldest first).
func (f *holdFixture) cart(user string, want []string) {
	f.t.Helper()
	hs, err := f.st.ListHolds(f.ctx, user, f.now)
	if err != nil {
		f.t.Fatal(err)
	}
	got := []string{}
	for _, h := range hs {
		got = append(got, h.ID)
	}
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		f.t.Fatalf("%s's cart: %v, want %v", user, got, want)
	}
}

// TestBoltHoldLeavesUsersAlone: holds, removals, expiry and checkouts write no
// user-keyed bucket (there is none: no carts, no user_sale); the carts and the
// per-user counts are the writer's (bolt_holds.go), and right at once.
func TestBoltHoldLeavesUsersAlone(t *testing.T) {
	f := newHoldFixture(t)
	a1, err := f.hold("a", 2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b1, err := f.hold("b", 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.hold("a", 2, time.Hour); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("a's 2 more units: %v, want limit_exceeded", err)
	}
	a2, err := f.hold("a", 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.cart("a", []string{a1, a2})
	f.cart("b", []string{b1})
	if _, err := f.st.RemoveHold(f.ctx, "a", a2, f.now); err != nil {
		t.Fatal(err)
	}
	f.cart("a", []string{a1})
	if n, _, err := f.st.ReleaseExpiredHolds(f.ctx, f.now.Add(2*time.Minute), 10); err != nil || n != 1 {
		t.Fatalf("released %d (%v), want 1 (b's)", n, err)
	}
	f.cart("b", []string{b1}) // expired, listed until b's next checkout
	if _, err := f.hold("b", 3, time.Hour); err != nil {
		t.Fatalf("b holds 3 after the expiry: %v", err)
	}
	res, err := f.st.Checkout(f.ctx, CheckoutRequest{OrderID: newID(), UserID: "a", IdempotencyKey: "k", Fingerprint: "fp"}, f.now)
	if err != nil || !res.Created || res.Order.Items[0].Quantity != 2 {
		t.Fatalf("a's checkout: %+v %v", res, err)
	}
	f.cart("a", nil)
	if _, err := f.hold("a", 2, time.Hour); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("a bought 2, holds 2 more: %v, want limit_exceeded", err)
	}
	f.st.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketCarts, bucketUserSale} {
			if tx.Bucket(name) != nil {
				t.Errorf("the file has the bucket %s", name)
			}
		}
		if n := tx.Bucket(bucketUsers).Stats().KeyN; n != 0 {
			t.Errorf("users has %d entries, want 0", n)
		}
		return nil
	})
}

// TestBoltHoldIndexRebuiltOnOpen: after a reopen the carts list the same holds in the
// same order (a new hold after them) and each buyer's count is the units held (not
// released) and bought, whether the orders are in order_log or indexed in users.
func TestBoltHoldIndexRebuiltOnOpen(t *testing.T) {
	f := newHoldFixture(t)
	carts := map[string][]string{}
	hold := func(user string, q int, ttl time.Duration) {
		t.Helper()
		id, err := f.hold(user, q, ttl)
		if err != nil {
			t.Fatal(err)
		}
		carts[user] = append(carts[user], id)
	}
	// u0: bought 2, holds 1 → full. u1: holds 1 plain-product hold and 1 unit.
	// u2: 1 unit released (expired) → 0. u3: bought 1 (order indexed into users).
	f.reopen(boltTuning{indexBatch: 1, indexIdle: time.Hour}) // this checkout indexes the log
	hold("u0", 2, time.Hour)
	if _, err := f.st.Checkout(f.ctx, CheckoutRequest{OrderID: newID(), UserID: "u0", IdempotencyKey: "k", Fingerprint: "fp"}, f.now); err != nil {
		t.Fatal(err)
	}
	carts["u0"] = nil
	f.reopen(defaultTuning)
	hold("u3", 1, time.Hour)
	if _, err := f.st.Checkout(f.ctx, CheckoutRequest{OrderID: newID(), UserID: "u3", IdempotencyKey: "k", Fingerprint: "fp"}, f.now); err != nil {
		t.Fatal(err)
	}
	carts["u3"] = nil
	hold("u0", 1, time.Hour)
	if _, _, err := f.st.HoldUnits(f.ctx, HoldRequest{ID: newID(), UserID: "u1", ProductID: f.product, Quantity: 1, ExpiresAt: f.now.Add(time.Hour)}, f.now); err != nil {
		t.Fatal(err)
	}
	hs, _ := f.st.ListHolds(f.ctx, "u1", f.now)
	carts["u1"] = []string{hs[0].ID}
	hold("u1", 1, time.Hour)
	hold("u2", 1, time.Minute)
	if _, _, err := f.st.ReleaseExpiredHolds(f.ctx, f.now.Add(2*time.Minute), 10); err != nil {
		t.Fatal(err)
	}
	if logged, indexed := f.counts(); logged != 1 || indexed != 1 {
		t.Fatalf("orders: %d in the log, %d indexed; want 1, 1", logged, indexed)
	}
	users := []string{"u0", "u1", "u2", "u3"}
	f.reopen(defaultTuning)
	for _, u := range users {
		f.cart(u, carts[u])
	}
	// Exactly the room left: one unit more is refused, the room is held (after the old
	// holds in the cart).
	for _, c := range []struct {
		user string
		room int
	}{{"u0", 0}, {"u1", 2}, {"u2", 3}, {"u3", 2}} {
		if _, err := f.hold(c.user, c.room+1, time.Hour); !errors.Is(err, ErrLimitExceeded) {
			t.Fatalf("%s holds %d: %v, want limit_exceeded", c.user, c.room+1, err)
		}
		if c.room > 0 {
			hold(c.user, c.room, time.Hour)
		}
	}
	f.reopen(defaultTuning)
	for _, u := range users {
		f.cart(u, carts[u])
		if _, err := f.hold(u, 1, time.Hour); !errors.Is(err, ErrLimitExceeded) {
			t.Fatalf("after the second reopen %s holds 1: %v, want limit_exceeded", u, err)
		}
	}
	if s, _ := f.st.GetSale(f.ctx, f.sale); s.Held != 1+1+2+3+2 || s.Sold != 3 || s.Remaining != 100-9-3 {
		t.Fatalf("sale held/sold/remaining %d/%d/%d, want 9/3/88", s.Held, s.Sold, s.Remaining)
	}
}

// TestBoltHoldIndexRolledBack: a group that fails after a hold is rolled back, and so
// are the hold's cart entry and count.
func TestBoltHoldIndexRolledBack(t *testing.T) {
	f := newHoldFixture(t)
	boom := errors.New("boom")
	err := f.st.group(func(g *groupTx) error {
		var answer error
		if err := groupFn(func(t *boltTx) error {
			_, err := t.holdUnits(HoldRequest{ID: newID(), UserID: "u", SaleID: f.sale, Quantity: 3, ExpiresAt: f.now.Add(time.Hour)}, f.now)
			return err
		}, &answer)(g); err != nil || answer != nil {
			return fmt.Errorf("hold in the group: %v %v", err, answer)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("the failing group: %v, want boom", err)
	}
	f.cart("u", nil)
	if _, err := f.hold("u", 3, time.Hour); err != nil {
		t.Fatalf("3 units after the rolled-back hold: %v", err)
	}
}

// TestBoltSaleUnitsDroppedWhenEnded: an ended sale's counts leave memory; its holds
// still go back (to the product) when removed.
func TestBoltSaleUnitsDroppedWhenEnded(t *testing.T) {
	f := newHoldFixture(t)
	id, err := f.hold("u", 2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := f.st.StopSale(f.ctx, f.sale, f.now); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.RemoveHold(f.ctx, "u", id, f.now); err != nil {
		t.Fatal(err)
	}
	f.cart("u", nil)
	done := make(chan int, 1)
	f.st.group(func(g *groupTx) error { done <- len(g.units); return nil })
	if n := <-done; n != 0 {
		t.Fatalf("%d sales counted in memory, want 0", n)
	}
	s, _ := f.st.GetSale(f.ctx, f.sale)
	if s.Held != 0 || s.Returned != 100 {
		t.Fatalf("sale held %d returned %d, want 0, 100", s.Held, s.Returned)
	}
}
