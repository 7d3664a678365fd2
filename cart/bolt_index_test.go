package cart

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// indexFixture is a store on a file with one stream and a product of ample stock.
type indexFixture struct {
	t       testing.TB
	path    string
	st      *BoltStore
	ctx     context.Context
	now     time.Time
	product string
}

func newIndexFixture(t *testing.T, tuning boltTuning) *indexFixture {
	f := &indexFixture{t: t, path: filepath.Join(t.TempDir(), "index.db"), ctx: context.Background(), now: time.Now().UTC()}
	f.reopen(tuning)
	sid := uuid.NewString()
	if err := f.st.CreateStream(f.ctx, Stream{ID: sid, Title: "t", CreatorID: "c", Status: StreamLive, CreatedAt: f.now}); err != nil {
		t.Fatal(err)
	}
	p, err := f.st.CreateProduct(f.ctx, Product{ID: uuid.NewString(), StreamID: sid, SKU: "s", Title: "t", PriceCents: 1, Currency: "EUR", Stock: 1000}, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.product = p.ID
	return f
}

// reopen closes the store (if open) and opens the file again.
func (f *indexFixture) reopen(tuning boltTuning) {
	f.t.Helper()
	if f.st != nil {
		if err := f.st.Close(); err != nil {
			f.t.Fatal(err)
		}
	}
	st, err := openBolt(f.path, tuning)
	if err != nil {
		f.t.Fatal(err)
	}
	f.st = st
	f.t.Cleanup(func() { st.Close() })
}

// reopenLogged is reopen, the store logging to the records it returns.
func (f *indexFixture) reopenLogged(tuning boltTuning) *logRecords {
	f.t.Helper()
	if err := f.st.Close(); err != nil {
		f.t.Fatal(err)
	}
	logs := &logRecords{}
	st, err := openBoltLog(f.path, tuning, slog.New(logs))
	if err != nil {
		f.t.Fatal(err)
	}
	f.st = st
	f.t.Cleanup(func() { st.Close() })
	return logs
}

// buy holds one unit for user and checks out with key; it returns the order.
func (f *indexFixture) buy(user, key string) Order {
	f.t.Helper()
	if _, _, err := f.st.HoldUnits(f.ctx, HoldRequest{ID: newID(), UserID: user, ProductID: f.product, Quantity: 1, ExpiresAt: f.now.Add(time.Hour)}, f.now); err != nil {
		f.t.Fatal(err)
	}
	res, err := f.st.Checkout(f.ctx, CheckoutRequest{OrderID: newID(), UserID: user, IdempotencyKey: key, Fingerprint: "fp-" + key}, f.now)
	if err != nil || !res.Created {
		f.t.Fatalf("checkout of %s with %s: created %v, %v", user, key, res.Created, err)
	}
	return res.Order
}

// orders checks that user's orders list want, by id, oldest first.
func (f *indexFixture) orders(user string, want []string) {
	f.t.Helper()
	os, err := f.st.ListOrders(f.ctx, user)
	if err != nil {
		f.t.Fatal(err)
	}
	got := []string{}
	for _, o := range os {
		got = append(got, o.ID)
	}
	if !slices.Equal(got, want) {
		f.t.Fatalf("%s's orders: got %v, want %v", user, got, want)
	}
}

// counts returns the entries of order_log and the order index entries in users.
func (f *indexFixture) counts() (logged, indexed int) {
	f.t.Helper()
	f.st.db.View(func(tx *bolt.Tx) error {
		logged = tx.Bucket(bucketOrderLog).Stats().KeyN
		return tx.Bucket(bucketUsers).ForEach(func(k, _ []byte) error {
			if kind, _ := userKeyKind(k); kind == kindOrder {
				indexed++
			}
			return nil
		})
	})
	return logged, indexed
}

// TestBoltCheckoutLeavesUsersAlone: a checkout writes nothing in users (the random
// user-keyed page); its order is in order_log and listed at once; its idempotency
// record is the value of its idem_expiry entry.
func TestBoltCheckoutLeavesUsersAlone(t *testing.T) {
	f := newIndexFixture(t, defaultTuning)
	o := f.buy("u", "k")
	f.orders("u", []string{o.ID})
	if logged, indexed := f.counts(); logged != 1 || indexed != 0 {
		t.Fatalf("after a checkout: %d orders in the log, %d in users; want 1, 0", logged, indexed)
	}
	f.st.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketUsers).Stats().KeyN; n != 0 {
			t.Errorf("users has %d entries after a checkout, want 0", n)
		}
		k, v := tx.Bucket(bucketIdemExpiry).Cursor().First()
		var rec boltIdem
		if k == nil || unmarshalRecord(v, &rec) != nil || rec.OrderID != o.ID || string(k[8:]) != string(userKey("u", kindIdem, "k")) {
			t.Errorf("idem_expiry's entry: %q → %q, want the key's record of order %s", k, v, o.ID)
		}
		return nil
	})
}

// TestBoltOrderLogIndexed: with batches of 5, the orders of three buyers go from the
// log to users' index once five are waiting (in that group), the rest when the writer
// is idle; every buyer sees every order of theirs right after its checkout, oldest
// first, whether it is in the log, in the index or in both halves, and after a reopen.
func TestBoltOrderLogIndexed(t *testing.T) {
	f := newIndexFixture(t, boltTuning{indexBatch: 5, indexIdle: 200 * time.Millisecond})
	want := map[string][]string{}
	users := []string{"a", "b", "a:b", "c"}
	for i := range 13 {
		u := users[i%3]
		want[u] = append(want[u], f.buy(u, fmt.Sprint("k", i)).ID)
		for _, u := range users {
			f.orders(u, want[u])
		}
		if logged, indexed := f.counts(); logged+indexed != i+1 || logged >= 5 {
			t.Fatalf("after %d checkouts: %d in the log, %d indexed; want %d in all, fewer than 5 in the log", i+1, logged, indexed, i+1)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if logged, indexed := f.counts(); logged == 0 && indexed == 13 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("idle writer: %d orders left in the log, %d indexed; want 0, 13", logged, indexed)
		}
	}
	for _, u := range users {
		f.orders(u, want[u])
	}
	// Half indexed, half in the log across a reopen: oldest first still.
	f.reopen(boltTuning{indexBatch: 1 << 20, indexIdle: time.Hour})
	want["a"] = append(want["a"], f.buy("a", "later").ID)
	f.reopen(boltTuning{indexBatch: 1 << 20, indexIdle: time.Hour})
	for _, u := range users {
		f.orders(u, want[u])
	}
	if logged, indexed := f.counts(); logged != 1 || indexed != 13 {
		t.Fatalf("after reopening: %d in the log, %d indexed; want 1, 13", logged, indexed)
	}
}

// TestBoltIdemIndexRebuiltOnOpen: idempotency keys are known again after a reopen
// (replay, conflict with another body), a key of another user is not, and the sweep
// 24 h later forgets them on file and in memory, so a reopen finds none.
func TestBoltIdemIndexRebuiltOnOpen(t *testing.T) {
	f := newIndexFixture(t, defaultTuning)
	o1, o2 := f.buy("u", "k1"), f.buy("v", "k1")
	f.reopen(defaultTuning)
	if n := len(f.st.idem); n != 2 {
		t.Fatalf("index after reopen: %d keys, want 2", n)
	}
	for _, c := range []struct{ user, order string }{{"u", o1.ID}, {"v", o2.ID}} {
		res, err := f.st.Checkout(f.ctx, CheckoutRequest{OrderID: newID(), UserID: c.user, IdempotencyKey: "k1", Fingerprint: "fp-k1"}, f.now)
		if err != nil || res.Created || res.Order.ID != c.order {
			t.Errorf("%s replays k1: order %s created %v %v; want %s", c.user, res.Order.ID, res.Created, err, c.order)
		}
		_, err = f.st.Checkout(f.ctx, CheckoutRequest{OrderID: newID(), UserID: c.user, IdempotencyKey: "k1", Fingerprint: "other"}, f.now)
		if !errors.Is(err, ErrConflict) {
			t.Errorf("%s's k1 with another body: %v, want conflict", c.user, err)
		}
	}
	if _, _, err := f.st.ReleaseExpiredHolds(f.ctx, f.now.Add(IdempotencyTTL+time.Minute), 100); err != nil {
		t.Fatal(err)
	}
	if n := len(f.st.idem); n != 0 {
		t.Errorf("index after the sweep: %d keys, want 0", n)
	}
	f.reopen(defaultTuning)
	if n := len(f.st.idem); n != 0 {
		t.Errorf("index after the sweep and a reopen: %d keys, want 0", n)
	}
	f.st.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketIdemExpiry).Stats().KeyN; n != 0 {
			t.Errorf("idem_expiry after the sweep: %d entries, want 0", n)
		}
		return nil
	})
}

// TestBoltIdemIndexRolledBack: a group that fails after a checkout is rolled back, and
// so is the checkout's key in the index (else a later checkout with the key would find
// it and look for a record that is not there); an order logged by it is not counted.
func TestBoltIdemIndexRolledBack(t *testing.T) {
	f := newIndexFixture(t, defaultTuning)
	if _, _, err := f.st.HoldUnits(f.ctx, HoldRequest{ID: newID(), UserID: "u", ProductID: f.product, Quantity: 1, ExpiresAt: f.now.Add(time.Hour)}, f.now); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := f.st.group(func(g *groupTx) error {
		var answer error
		if err := groupFn(func(t *boltTx) error {
			_, _, err := t.checkout(CheckoutRequest{OrderID: newID(), UserID: "u", IdempotencyKey: "k", Fingerprint: "fp-k"}, f.now)
			return err
		}, &answer)(g); err != nil || answer != nil {
			return fmt.Errorf("checkout in the group: %v %v", err, answer)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("the failing group: %v, want boom", err)
	}
	if len(f.st.idem) != 0 || f.st.unindexed != 0 {
		t.Fatalf("after the rolled-back group: %d keys in the index, %d orders counted in the log; want 0, 0", len(f.st.idem), f.st.unindexed)
	}
	res, err := f.st.Checkout(f.ctx, CheckoutRequest{OrderID: newID(), UserID: "u", IdempotencyKey: "k", Fingerprint: "fp-k"}, f.now)
	if err != nil || !res.Created {
		t.Fatalf("checkout with the key after the rollback: created %v %v, want a new order", res.Created, err)
	}
	f.orders("u", []string{res.Order.ID})
}

// TestBoltListOrdersWhileIndexing: buyers check out and list their orders at once
// while the writer indexes the log every 7 orders and whenever idle for 1 ms; each
// listing is exactly the buyer's acknowledged orders, oldest first: none missed
// between the log and the index, none listed twice.
func TestBoltListOrdersWhileIndexing(t *testing.T) {
	f := newIndexFixture(t, boltTuning{indexBatch: 7, indexIdle: time.Millisecond})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user, mine := fmt.Sprint("w", w), []string{}
			for i := range 20 {
				if _, _, err := f.st.HoldUnits(f.ctx, HoldRequest{ID: newID(), UserID: user, ProductID: f.product, Quantity: 1, ExpiresAt: f.now.Add(time.Hour)}, f.now); err != nil {
					t.Error(err)
					return
				}
				res, err := f.st.Checkout(f.ctx, CheckoutRequest{OrderID: newID(), UserID: user, IdempotencyKey: fmt.Sprint("k", i)}, f.now)
				if err != nil {
					t.Error(err)
					return
				}
				mine = append(mine, res.Order.ID)
				for range 3 {
					os, err := f.st.ListOrders(f.ctx, user)
					got := []string{}
					for _, o := range os {
						got = append(got, o.ID)
					}
					if err != nil || !slices.Equal(got, mine) {
						t.Errorf("%s's orders: got %v (%v), want %v", user, got, err, mine)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// TestBoltListOrdersIndexedNotYetDropped: between the commit that indexes orders and
// the writer's update of its copy of the log, the copy still has them; a listing then
// takes them from the index only (the copy's orders before the log's first entry, or
// all of them when the log is empty), not twice.
func TestBoltListOrdersIndexedNotYetDropped(t *testing.T) {
	f := newIndexFixture(t, boltTuning{indexBatch: 1 << 20, indexIdle: time.Hour})
	want := []string{f.buy("u", "k1").ID, f.buy("u", "k2").ID}
	f.st.loggedMu.RLock()
	stale := slices.Clone(f.st.logged["u"])
	f.st.loggedMu.RUnlock()
	err := f.st.group(func(g *groupTx) error { // the writer indexes the log
		var err error
		g.indexed, err = indexOrders(g.tx, maxIndexPass)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if logged, indexed := f.counts(); logged != 0 || indexed != 2 {
		t.Fatalf("after indexing: %d in the log, %d indexed; want 0, 2", logged, indexed)
	}
	setCopy := func(refs []orderRef) {
		f.st.loggedMu.Lock()
		f.st.logged["u"] = refs
		f.st.loggedMu.Unlock()
	}
	setCopy(stale) // the log is empty
	f.orders("u", want)
	want = append(want, f.buy("u", "k3").ID)
	f.st.loggedMu.RLock()
	third := f.st.logged["u"]
	f.st.loggedMu.RUnlock()
	setCopy(append(slices.Clone(stale), third...)) // the log holds the third
	f.orders("u", want)
}
