package cart

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestBoltGroupsShareValueChunk: each group transaction cuts the values it writes
// from the writer's value chunk, which the next group writes over once the
// transaction has ended (keepVals). n buyers' holds and checkouts, one call at a time
// (a group each), then 50 at a time (groups of many): every hold and order reads back as it was answered, after all the groups
// that came later (a chunk written over too early would change them), and after a
// reopen; and every group after the first cut its values from the first one's chunk
// (the store's vals, which the writer sets before it answers a group's calls).
func TestBoltGroupsShareValueChunk(t *testing.T) {
	const n = 600
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "vals.db")
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	sid, pid := uuid.NewString(), uuid.NewString()
	if err := st.CreateStream(ctx, Stream{ID: sid, Title: "t", CreatorID: "c", Status: StreamLive, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateProduct(ctx, Product{ID: pid, StreamID: sid, SKU: "s", Title: "t", PriceCents: 7, Currency: "EUR", Stock: 20 * n}, 0); err != nil {
		t.Fatal(err)
	}
	sale, _, err := st.CreateSale(ctx, Sale{ID: uuid.NewString(), StreamID: sid, ProductID: pid, PriceCents: 5,
		Quantity: 10 * n, PerUserLimit: 10, StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour)}, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	users := make([]string, n)
	holds := make([]Hold, n)   // the second hold of each user, left in the cart
	orders := make([]Order, n) // each user's order of its first hold
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var chunk *byte // the array of the first group's chunk
	sameChunk := func(step string, i int) {
		if cap(st.vals) == 0 {
			t.Fatalf("%s %d: the writer kept no value chunk", step, i)
		}
		if p := &st.vals[:1][0]; chunk == nil {
			chunk = p
		} else if p != chunk {
			t.Fatalf("%s %d: the group cut its values from a chunk of its own", step, i)
		}
	}
	buyer := func(i int, sequential bool) error {
		users[i] = fmt.Sprintf("user-%d-%s", i, uuid.NewString())
		req := HoldRequest{ID: newID(), UserID: users[i], SaleID: sale.ID, Quantity: 1 + i%3, ExpiresAt: now.Add(time.Hour)}
		if _, _, err := st.HoldUnits(ctx, req, now); err != nil {
			return err
		}
		if sequential {
			sameChunk("hold", i)
		}
		res, err := st.Checkout(ctx, CheckoutRequest{OrderID: newID(), UserID: users[i], IdempotencyKey: fmt.Sprint("key-", i),
			Fingerprint: emptyCheckoutFingerprint}, now)
		if err != nil || !res.Created {
			return fmt.Errorf("checkout %d: %+v, %v", i, res, err)
		}
		orders[i] = res.Order
		if sequential {
			sameChunk("checkout", i)
		}
		req = HoldRequest{ID: newID(), UserID: users[i], ProductID: pid, Quantity: 1 + i%4, ExpiresAt: now.Add(time.Hour)}
		if holds[i], _, err = st.HoldUnits(ctx, req, now); err != nil {
			return err
		}
		if sequential {
			sameChunk("second hold", i)
		}
		return nil
	}
	// The first half one call at a time (a group each), the second half 50 at a time
	// (groups of many calls, some filling a chunk and taking a new one).
	for i := range n / 2 {
		if err := buyer(i, true); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	// 3 groups a user (a chunk of its own each was valueChunk bytes more a group).
	t.Logf("%.0f bytes allocated per group", float64(after.TotalAlloc-before.TotalAlloc)/(3*n/2))
	errs := make(chan error, n)
	for w := range 50 {
		go func() {
			var err error
			for i := n/2 + w; i < n && err == nil; i += 50 {
				err = buyer(i, false)
			}
			errs <- err
		}()
	}
	for range 50 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	check := func(st *BoltStore, when string) {
		for i, u := range users {
			got, err := st.ListHolds(ctx, u, now)
			if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], holds[i]) {
				t.Fatalf("%s: user %d's cart: got %+v, %v; want [%+v]", when, i, got, err, holds[i])
			}
			os, err := st.ListOrders(ctx, u)
			if err != nil || len(os) != 1 || !reflect.DeepEqual(os[0], orders[i]) {
				t.Fatalf("%s: user %d's orders: got %+v, %v; want [%+v]", when, i, os, err, orders[i])
			}
			res, err := st.Checkout(ctx, CheckoutRequest{OrderID: newID(), UserID: u, IdempotencyKey: fmt.Sprint("key-", i),
				Fingerprint: emptyCheckoutFingerprint}, now)
			if err != nil || res.Created || !reflect.DeepEqual(res.Order, orders[i]) {
				t.Fatalf("%s: user %d's retry: got %+v, %v; want the first order %+v", when, i, res, err, orders[i])
			}
		}
	}
	check(st, "open")
	st.Close()
	st, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	check(st, "reopened")
}
