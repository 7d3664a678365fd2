package cart

import (
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writerHoldIndex copies the writer's carts and units (read on the writer goroutine).
func writerHoldIndex(t *testing.T, st *BoltStore) holdIndex {
	t.Helper()
	var ix holdIndex
	if err := st.group(func(g *groupTx) error {
		ix = holdIndex{carts: map[string][]cartEntry{}, units: map[string]map[string]int{}}
		for u, c := range st.carts {
			ix.carts[u] = slices.Clone(c)
		}
		for s, us := range st.units {
			if len(us) > 0 {
				ix.units[s] = maps.Clone(us)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ix
}

// checkHoldIndexMatchesFile: the writer's carts and units are what the file says
// (loadHoldIndex, as on open), carts in the same order.
func checkHoldIndexMatchesFile(t *testing.T, st *BoltStore, when string) {
	t.Helper()
	mem := writerHoldIndex(t, st)
	var file holdIndex
	if err := st.db.View(func(tx *bolt.Tx) error {
		var err error
		file, err = loadHoldIndex(tx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(mem.carts, file.carts, slices.Equal) {
		t.Errorf("%s: the writer's carts differ from the file's:\n memory %v\n file   %v", when, mem.carts, file.carts)
	}
	if !maps.EqualFunc(mem.units, file.units, maps.Equal) {
		t.Errorf("%s: the writer's units differ from the file's:\n memory %v\n file   %v", when, mem.units, file.units)
	}
}

// TestBoltHoldIndexStorm: buyers hold, remove, check out (whole cart and by hold ids)
// and let holds expire concurrently, with commits that report an error after landing
// now and then (landed or not), a second sale stopped midway and a reopen: the writer's carts
// and per-user counts always equal what the file says (as a reopen would rebuild
// them), and no buyer ever has more than the limit held and bought.
func TestBoltHoldIndexStorm(t *testing.T) {
	f := newHoldFixture(t)
	const limit = 3
	p, _ := f.st.GetProduct(f.ctx, f.product)
	other, _, err := f.st.CreateSale(f.ctx, Sale{ID: newID(), StreamID: p.StreamID, ProductID: p.ID, PriceCents: 1,
		Quantity: 100, PerUserLimit: limit, StartsAt: f.now.Add(-time.Minute), EndsAt: f.now.Add(time.Hour)}, f.now, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Now and then a commit reports an error, after landing (commitFault) or before
	// (commitFaultBefore): the writer must apply the group's changes iff it landed.
	var faults atomic.Int64
	var faultOn atomic.Bool
	fault := func() error {
		if faultOn.Load() && rand.IntN(40) == 0 {
			faults.Add(1)
			return errors.New("fdatasync: input/output error")
		}
		return nil
	}
	setFaults := func() { // set by the writer itself (the idle writer reads them)
		f.st.group(func(*groupTx) error {
			f.st.commitFault, f.st.commitFaultBefore = fault, fault
			return nil
		})
	}
	setFaults()
	faultOn.Store(true)
	users := []string{"u0", "u1", "u2", "u3", "u4", "u5"}
	round := func(seed uint64, steps int) {
		var wg sync.WaitGroup
		for w := 0; w < 6; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, uint64(w)))
				for i := 0; i < steps; i++ {
					u := users[r.IntN(len(users))]
					sale := f.sale
					if r.IntN(3) == 0 {
						sale = other.ID
					}
					switch op := r.IntN(10); {
					case op < 4:
						ttl := time.Hour
						if r.IntN(3) == 0 {
							ttl = time.Minute
						}
						req := HoldRequest{ID: newID(), UserID: u, SaleID: sale, Quantity: 1 + r.IntN(2), ExpiresAt: f.now.Add(ttl)}
						if r.IntN(4) == 0 {
							req.SaleID, req.ProductID = "", f.product
						}
						f.st.HoldUnits(f.ctx, req, f.now)
					case op < 6:
						hs, err := f.st.ListHolds(f.ctx, u, f.now)
						if err != nil {
							t.Error(err)
							return
						}
						if len(hs) > 0 {
							f.st.RemoveHold(f.ctx, u, hs[r.IntN(len(hs))].ID, f.now)
						}
					case op < 8:
						req := CheckoutRequest{OrderID: newID(), UserID: u, IdempotencyKey: newID(), Fingerprint: "fp"}
						if r.IntN(2) == 0 {
							hs, _ := f.st.ListHolds(f.ctx, u, f.now)
							if len(hs) > 0 {
								req.HoldIDs = []string{hs[r.IntN(len(hs))].ID}
							}
						}
						f.st.Checkout(f.ctx, req, f.now)
					case op < 9:
						f.st.ReleaseExpiredHolds(f.ctx, f.now.Add(2*time.Minute), 1+r.IntN(5))
					default:
						f.st.ListHolds(f.ctx, u, f.now)
					}
				}
			}(w)
		}
		wg.Wait()
	}
	// overLimit checks the file: unreleased holds + bought units of each live sale.
	overLimit := func(when string) {
		t.Helper()
		f.st.db.View(func(tx *bolt.Tx) error {
			ix, err := loadHoldIndex(tx)
			if err != nil {
				t.Fatal(err)
			}
			for s, us := range ix.units {
				for u, n := range us {
					if n > limit {
						t.Errorf("%s: %s has %d units of sale %s, limit %d", when, u, n, s, limit)
					}
				}
			}
			return nil
		})
	}
	round(1, 150)
	faultOn.Store(false)
	checkHoldIndexMatchesFile(t, f.st, "after the first round")
	overLimit("after the first round")
	faultOn.Store(true)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(5 * time.Millisecond)
		for {
			if _, _, _, err := f.st.StopSale(f.ctx, other.ID, f.now); err == nil {
				return
			}
		}
	}()
	round(2, 150)
	wg.Wait()
	faultOn.Store(false)
	checkHoldIndexMatchesFile(t, f.st, "after the second round (a sale stopped)")
	overLimit("after the second round")
	f.reopen(defaultTuning)
	checkHoldIndexMatchesFile(t, f.st, "after a reopen")
	setFaults()
	faultOn.Store(true)
	round(3, 100)
	faultOn.Store(false)
	checkHoldIndexMatchesFile(t, f.st, "after the third round")
	overLimit("after the third round")
	checkStreamInvariants(t, f.st, p.StreamID, map[string]int{f.product: 1000})
	t.Logf("%d commits reported an error", faults.Load())
}
