package cart

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestBoltCommitErrorAfterWrite: bbolt reports a failed fdatasync of the meta page it
// has already written, and the transactions after it see that commit all the same
// (the page is in the file's cache; a NoFreelistSync rollback even rebuilds the
// freelist from that meta). The checkout's caller got an error and retries with the
// same key and body: it gets the order that landed (not a new one, not a 4xx), and
// the buyer's listing shows it once, at once.
func TestBoltCommitErrorAfterWrite(t *testing.T) {
	f := newIndexFixture(t, defaultTuning)
	if _, _, err := f.st.HoldUnits(f.ctx, HoldRequest{ID: newID(), UserID: "u", ProductID: f.product, Quantity: 1, ExpiresAt: f.now.Add(time.Hour)}, f.now); err != nil {
		t.Fatal(err)
	}
	failOnce(f.st, true)
	req := CheckoutRequest{OrderID: newID(), UserID: "u", IdempotencyKey: "k", Fingerprint: "fp-k"}
	if _, err := f.st.Checkout(f.ctx, req, f.now); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("checkout whose commit reports an error: %v, want ErrUnavailable", err)
	}
	req.OrderID = newID()
	res, err := f.st.Checkout(f.ctx, req, f.now)
	if err != nil || res.Created {
		t.Fatalf("the retry with the same key and body: order %s created %v, %v; want the order that landed, not created", res.Order.ID, res.Created, err)
	}
	f.orders("u", []string{res.Order.ID})
	req.Fingerprint = "other"
	if _, err := f.st.Checkout(f.ctx, req, f.now); !errors.Is(err, ErrConflict) {
		t.Fatalf("the key with another body: %v, want ErrConflict", err)
	}
}

// TestBoltCommitErrorBeforeWrite: a commit that fails before its meta page is written
// leaves nothing in the file, and nothing in the in-memory copies: the retry with the
// same key and body makes the order (created), the buyer lists it alone, and the
// order the failed commit would have made does not exist.
func TestBoltCommitErrorBeforeWrite(t *testing.T) {
	f := newIndexFixture(t, defaultTuning)
	if _, _, err := f.st.HoldUnits(f.ctx, HoldRequest{ID: newID(), UserID: "u", ProductID: f.product, Quantity: 1, ExpiresAt: f.now.Add(time.Hour)}, f.now); err != nil {
		t.Fatal(err)
	}
	failOnce(f.st, false)
	req := CheckoutRequest{OrderID: newID(), UserID: "u", IdempotencyKey: "k", Fingerprint: "fp-k"}
	lost := req.OrderID
	if _, err := f.st.Checkout(f.ctx, req, f.now); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("checkout whose commit fails: %v, want ErrUnavailable", err)
	}
	req.OrderID = newID()
	res, err := f.st.Checkout(f.ctx, req, f.now)
	if err != nil || !res.Created || res.Order.ID != req.OrderID {
		t.Fatalf("the retry with the same key and body: order %s created %v, %v; want %s created", res.Order.ID, res.Created, err, req.OrderID)
	}
	f.orders("u", []string{res.Order.ID})
	f.st.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketOrders).Get([]byte(lost)) != nil {
			t.Errorf("the order of the failed commit is in the file")
		}
		return nil
	})
}

// TestBoltIndexCommitError: a commit that moves orders from order_log into users'
// index fails, in a group's transaction (the log full) and in the idle writer's. If it
// landed, the store's copy of the log drops the orders as after a commit (they are
// listed from the index); if not, they stay in the log and the copy, and are indexed
// later. Either way each order is listed once.
func TestBoltIndexCommitError(t *testing.T) {
	for _, tc := range []struct {
		name   string
		landed bool
		tuning boltTuning
	}{
		{"group landed", true, boltTuning{indexBatch: 3, indexIdle: time.Hour}},
		{"group not landed", false, boltTuning{indexBatch: 3, indexIdle: time.Hour}},
		{"idle landed", true, boltTuning{indexBatch: 1000, indexIdle: 20 * time.Millisecond}},
		{"idle not landed", false, boltTuning{indexBatch: 1000, indexIdle: 20 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newIndexFixture(t, tc.tuning)
			want := []string{f.buy("u", "k1").ID, f.buy("u", "k2").ID}
			group := tc.tuning.indexBatch == 3 // the third checkout fills the log
			if group {
				if _, _, err := f.st.HoldUnits(f.ctx, HoldRequest{ID: newID(), UserID: "u", ProductID: f.product, Quantity: 1, ExpiresAt: f.now.Add(time.Hour)}, f.now); err != nil {
					t.Fatal(err)
				}
			}
			fired := failOnce(f.st, tc.landed)
			if group {
				req := CheckoutRequest{OrderID: newID(), UserID: "u", IdempotencyKey: "k3", Fingerprint: "fp-k3"}
				if _, err := f.st.Checkout(f.ctx, req, f.now); !errors.Is(err, ErrUnavailable) {
					t.Fatalf("checkout whose commit fails: %v, want ErrUnavailable", err)
				}
				res, err := f.st.Checkout(f.ctx, req, f.now)
				if err != nil || res.Created != !tc.landed {
					t.Fatalf("the retry: created %v, %v; want created %v", res.Created, err, !tc.landed)
				}
				want = append(want, res.Order.ID)
			}
			for deadline := time.Now().Add(5 * time.Second); !fired.Load(); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("no commit failed within 5 s")
				}
			}
			f.st.group(func(*groupTx) error { return nil }) // the writer is done with the failure
			f.orders("u", want)
			// Landed: dropped from the copy at once. Not landed: in a group, indexed by
			// the retry's group; when idle, by the next idle time.
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				n := loggedCopy(f.st, "u")
				if n == 0 {
					break
				}
				if tc.landed || group || time.Now().After(deadline) {
					t.Fatalf("after the failed commit: %d orders in the copy of the log, want 0", n)
				}
			}
			f.orders("u", want)
		})
	}
}

// failOnce makes the next commit of the store's writer fail, once: landed, after the
// commit (commitFault); or not, before it (commitFaultBefore). It returns whether it
// has failed one. The hook is set by the writer itself (the idle writer reads it at
// any time).
func failOnce(s *BoltStore, landed bool) *atomic.Bool {
	var armed, fired atomic.Bool
	fault := func() error {
		if armed.Load() && fired.CompareAndSwap(false, true) {
			return errors.New("fdatasync: input/output error")
		}
		return nil
	}
	s.group(func(*groupTx) error {
		if landed {
			s.commitFault = fault
		} else {
			s.commitFaultBefore = fault
		}
		return nil
	})
	armed.Store(true)
	return &fired
}

// loggedCopy returns how many of user's orders the store's copy of order_log holds.
func loggedCopy(s *BoltStore, user string) int {
	s.loggedMu.RLock()
	defer s.loggedMu.RUnlock()
	return len(s.logged[user])
}

// TestBoltHoldCommitError: a hold whose commit fails is in the buyer's cart if the
// commit landed all the same (the in-memory carts and units applied as after a
// commit), and not if it did not.
func TestBoltHoldCommitError(t *testing.T) {
	for _, landed := range []bool{true, false} {
		t.Run(fmt.Sprintf("landed=%v", landed), func(t *testing.T) {
			f := newIndexFixture(t, defaultTuning)
			failOnce(f.st, landed)
			id := newID()
			if _, _, err := f.st.HoldUnits(f.ctx, HoldRequest{ID: id, UserID: "u", ProductID: f.product, Quantity: 1, ExpiresAt: f.now.Add(time.Hour)}, f.now); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("hold whose commit fails: %v, want ErrUnavailable", err)
			}
			hs, err := f.st.ListHolds(f.ctx, "u", f.now)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(hs) == 1 && hs[0].ID == id; got != landed || len(hs) > 1 {
				t.Fatalf("after the failed commit: %d holds in the cart (the hold: %v), want the hold %v", len(hs), got, landed)
			}
		})
	}
}
