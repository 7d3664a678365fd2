package cart

import (
	"errors"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestBoltGarbageHoldStaysHeldUntilRestored: a hold record of which nothing can be read
// (not even its buyer) keeps its units held: nothing is sold on top of them (the sale's
// remaining + held + sold + returned stays its quantity), the sweeps and the sale's end
// go on past it, and its units are not returned while it cannot be read (a release
// would need its sale and quantity). Once the record is restored (a backup), the next
// open puts its expiry back and the sweep returns its units, once. Its buyer, unknown,
// is counted by no limit meanwhile; the hold is in no cart, so it cannot be bought:
// what any buyer can buy stays within the limit.
func TestBoltGarbageHoldStaysHeldUntilRestored(t *testing.T) {
	f := newHoldFixture(t)
	_, p2, s2 := f.secondSale(time.Hour) // quantity 5, limit 3
	stockBefore := p2.Stock              // what the product had before the sale
	hold := func(user string, q int) (string, error) { return f.holdIn(s2.ID, user, q) }
	alice, err := hold("alice", 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold("bob", 1); err != nil {
		t.Fatal(err)
	}
	orig := f.garble(alice)
	reopen := func() *logRecords { return f.reopenLogged(defaultTuning) }
	// check: the sale's units add up, and with the product's stock to what it had.
	check := func(when string, held, returned int) {
		t.Helper()
		s, err := f.st.GetSale(f.ctx, s2.ID)
		if err != nil {
			t.Fatal(err)
		}
		p, err := f.st.GetProduct(f.ctx, p2.ID)
		if err != nil {
			t.Fatal(err)
		}
		if s.Remaining+s.Held+s.Sold+s.Returned != s.Quantity || s.Held != held || s.Returned != returned ||
			p.Stock+s.Remaining+s.Held+s.Sold != stockBefore {
			t.Fatalf("%s: sale remaining %d held %d sold %d returned %d of %d, product stock %d of %d; want held %d, returned %d",
				when, s.Remaining, s.Held, s.Sold, s.Returned, s.Quantity, p.Stock, stockBefore, held, returned)
		}
	}
	logs := reopen()
	if logs.has("ERROR", "hold record cannot be read", "hold="+alice, "buyer is unknown") != 1 ||
		logs.has("ERROR", "the hold sweep no longer releases it", "hold="+alice) != 1 {
		t.Fatalf("open did not log the garbage hold; records:\n%s", strings.Join(logs.recs, "\n"))
	}
	check("after the open", 3, 0)
	if _, err := hold("carl", 2); err != nil {
		t.Fatalf("carl holds the last 2: %v", err)
	}
	if _, err := hold("dora", 1); !errors.Is(err, ErrSoldOut) {
		t.Fatalf("dora holds 1 of none left: %v, want ErrSoldOut", err)
	}
	if hs, err := f.st.ListHolds(f.ctx, "alice", f.now); err != nil || len(hs) != 0 {
		t.Fatalf("alice's cart: %v, %v; want empty (her hold cannot be read)", hs, err)
	}
	later := f.now.Add(2 * time.Hour)
	if _, err := f.st.AdvanceSales(f.ctx, later); err != nil {
		t.Fatal(err)
	}
	if n, _, err := f.st.ReleaseExpiredHolds(f.ctx, later, 100); err != nil || n != 2 {
		t.Fatalf("sweep: %d released, %v; want bob's and carl's", n, err)
	}
	check("after the sale's end and the sweep", 2, 3)
	checkHoldIndexMatchesFile(t, f.st, "with the garbage hold")

	f.restore(alice, orig)
	reopen()
	if n, _, err := f.st.ReleaseExpiredHolds(f.ctx, later, 100); err != nil || n != 1 {
		t.Fatalf("sweep after the restore: %d released, %v; want alice's", n, err)
	}
	check("after the restore and the sweep", 0, 5)
	reopen()
	if n, _, err := f.st.ReleaseExpiredHolds(f.ctx, later, 100); err != nil || n != 0 {
		t.Fatalf("sweep after another open: %d released, %v; want none", n, err)
	}
	check("after another open", 0, 5)
	checkHoldIndexMatchesFile(t, f.st, "after the restore")
}

// TestBoltRestoredHoldOverTheLimitExpires: while a hold record cannot be read (nor its
// buyer), its buyer's units are not counted and she can hold the sale's limit again.
// Restoring the record must not give her both: the open that finds it again expires it
// (its units go back with the next sweep, it stays listed as expired, a checkout of it
// is hold_expired), since with it she would hold more than the limit. A restored hold
// within the limit is put back as it was (TestBoltGarbageHoldStaysHeldUntilRestored).
func TestBoltRestoredHoldOverTheLimitExpires(t *testing.T) {
	f := newHoldFixture(t)
	_, _, s2 := f.secondSale(time.Hour) // quantity 5, limit 3
	hold := func(user string, q int) (string, error) { return f.holdIn(s2.ID, user, q) }
	first, err := hold("alice", 2)
	if err != nil {
		t.Fatal(err)
	}
	orig := f.garble(first)
	f.reopenLogged(defaultTuning)
	second, err := hold("alice", 3) // her first 2 are in no one's count
	if err != nil {
		t.Fatalf("alice holds 3 while her first hold cannot be read: %v", err)
	}
	f.restore(first, orig)
	f.reopenLogged(defaultTuning)
	hs, err := f.st.ListHolds(f.ctx, "alice", f.now)
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	for _, h := range hs {
		live[h.ID] = !h.Expired
	}
	if len(hs) != 2 || live[first] || !live[second] {
		t.Fatalf("alice's cart after the restore: %+v; want the restored hold %s expired and %s live (5 units live of a limit of 3)", hs, first, second)
	}
	if _, err := f.st.Checkout(f.ctx, CheckoutRequest{OrderID: newID(), UserID: "alice", HoldIDs: []string{first}, IdempotencyKey: "k", Fingerprint: "f"}, f.now); !errors.Is(err, ErrHoldExpired) {
		t.Fatalf("checkout of the restored hold: %v, want ErrHoldExpired", err)
	}
	if _, _, err := f.st.ReleaseExpiredHolds(f.ctx, f.now, 100); err != nil {
		t.Fatal(err)
	}
	s, err := f.st.GetSale(f.ctx, s2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Held != 3 || s.Remaining != 2 || s.Remaining+s.Held+s.Sold+s.Returned != s.Quantity {
		t.Fatalf("sale after the sweep: remaining %d held %d sold %d returned %d of %d; want held 3 (alice's second), remaining 2",
			s.Remaining, s.Held, s.Sold, s.Returned, s.Quantity)
	}
	if _, err := hold("alice", 1); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("alice holds a 4th unit: %v, want ErrLimitExceeded", err)
	}
	if _, err := hold("bob", 2); err != nil {
		t.Fatalf("bob holds the 2 units that came back: %v", err)
	}
	checkHoldIndexMatchesFile(t, f.st, "after the restore")
}

// holdIn holds q units of sale for user, for 30 minutes.
func (f *holdFixture) holdIn(sale, user string, q int) (string, error) {
	id := newID()
	_, _, err := f.st.HoldUnits(f.ctx, HoldRequest{ID: id, UserID: user, SaleID: sale, Quantity: q, ExpiresAt: f.now.Add(30 * time.Minute)}, f.now)
	return id, err
}

// garble overwrites the hold's record with bytes nothing can read and returns the record.
func (f *holdFixture) garble(hold string) []byte {
	f.t.Helper()
	var orig []byte
	if err := f.st.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHolds)
		orig = append([]byte(nil), b.Get([]byte(hold))...)
		return b.Put([]byte(hold), []byte("not json {"))
	}); err != nil {
		f.t.Fatal(err)
	}
	return orig
}

// restore puts the hold's record back (from a backup).
func (f *holdFixture) restore(hold string, rec []byte) {
	f.t.Helper()
	if err := f.st.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHolds).Put([]byte(hold), rec)
	}); err != nil {
		f.t.Fatal(err)
	}
}

// TestBoltRestoredHoldOfAnEndedSale: a hold record restored after its sale ended is
// checked against the sale's per-user limit as one of a live sale is (an ended sale's
// holds stay valid until they expire or are bought at the sale's price, so one over
// the limit would let its buyer buy more than the limit at that price). Over the
// limit, it comes back expired and the sweep returns its units to the product
// (counted in returned); within the limit, it comes back as it was and can be bought.
func TestBoltRestoredHoldOfAnEndedSale(t *testing.T) {
	for _, tc := range []struct {
		name    string
		more    int  // units alice holds (and buys if buy) while her first hold cannot be read
		buy     bool // she checks them out before the sale ends
		expired bool // her restored hold comes back expired
	}{
		{"over the limit, bought", 3, true, true},
		{"over the limit, held", 2, false, true},
		{"within the limit", 1, true, false},
		{"nothing more", 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newHoldFixture(t)
			_, p2, s2 := f.secondSale(time.Hour) // quantity 5, limit 3
			stockBefore := p2.Stock
			first, err := f.holdIn(s2.ID, "alice", 2)
			if err != nil {
				t.Fatal(err)
			}
			orig := f.garble(first)
			f.reopenLogged(defaultTuning)
			if tc.more > 0 {
				if _, err := f.holdIn(s2.ID, "alice", tc.more); err != nil {
					t.Fatalf("alice holds %d while her first hold cannot be read: %v", tc.more, err)
				}
			}
			if tc.buy {
				if _, err := f.st.Checkout(f.ctx, CheckoutRequest{OrderID: newID(), UserID: "alice", IdempotencyKey: "buy", Fingerprint: "f"}, f.now); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, _, err := f.st.StopSale(f.ctx, s2.ID, f.now); err != nil {
				t.Fatal(err)
			}
			f.restore(first, orig)
			logs := f.reopenLogged(defaultTuning)
			hs, err := f.st.ListHolds(f.ctx, "alice", f.now)
			if err != nil {
				t.Fatal(err)
			}
			var restored *Hold
			for i := range hs {
				if hs[i].ID == first {
					restored = &hs[i]
				}
			}
			if restored == nil || restored.Expired != tc.expired {
				t.Fatalf("alice's cart after the restore: %+v; want the restored hold %s with expired %v", hs, first, tc.expired)
			}
			if n := logs.has("ERROR", "more than the sale's per-user limit", "hold="+first); (n == 1) != tc.expired {
				t.Fatalf("%d records of the restored hold put back expired, want expired %v; records:\n%s", n, tc.expired, strings.Join(logs.recs, "\n"))
			}
			_, err = f.st.Checkout(f.ctx, CheckoutRequest{OrderID: newID(), UserID: "alice", HoldIDs: []string{first}, IdempotencyKey: "restored", Fingerprint: "f"}, f.now)
			if tc.expired && !errors.Is(err, ErrHoldExpired) || !tc.expired && err != nil {
				t.Fatalf("checkout of the restored hold: %v, want expired %v", err, tc.expired)
			}
			if _, _, err := f.st.ReleaseExpiredHolds(f.ctx, f.now, 100); err != nil {
				t.Fatal(err)
			}
			s, err := f.st.GetSale(f.ctx, s2.ID)
			if err != nil {
				t.Fatal(err)
			}
			p, err := f.st.GetProduct(f.ctx, p2.ID)
			if err != nil {
				t.Fatal(err)
			}
			bought := 0
			if tc.buy {
				bought = tc.more
			}
			if !tc.expired {
				bought += 2
			}
			if s.Status != SaleEnded || s.Sold != bought || s.Remaining+s.Held+s.Sold+s.Returned != s.Quantity ||
				p.Stock+s.Remaining+s.Held+s.Sold != stockBefore {
				t.Fatalf("after the sweep: sale %s remaining %d held %d sold %d returned %d of %d, product stock %d of %d; want sold %d",
					s.Status, s.Remaining, s.Held, s.Sold, s.Returned, s.Quantity, p.Stock, stockBefore, bought)
			}
			if tc.expired && s.Held != tc.more-bought {
				t.Fatalf("after the sweep: sale held %d, want %d (the restored hold's units returned)", s.Held, tc.more-bought)
			}
			checkHoldIndexMatchesFile(t, f.st, "after the restore")
		})
	}
}
