package cart

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestRedisCheckoutBatch: several users' checkouts in ONE script call (one batch of
// lua/checkout.lua), some failing (a hold already ordered, an expired hold, an
// unknown hold, a key used with another body) and the others succeeding; each is
// answered as if it ran alone and a failure never affects another.
func TestRedisCheckoutBatch(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 5)
	hold := func(user string, ttl time.Duration) Hold {
		t.Helper()
		h, err := e.hold(user, "", sale.ID, 1, ttl)
		if err != nil {
			t.Fatalf("hold of %s: %v", user, err)
		}
		return h
	}
	at := e.now.Add(2 * time.Second)
	sold := hold("sold", time.Hour)
	if _, err := e.checkout("sold", "first", nil, at); err != nil {
		t.Fatalf("first checkout of sold: %v", err)
	}
	if _, err := e.checkout("other-body", "k", nil, at); !errors.Is(err, ErrConflict) {
		t.Fatalf("checkout of an empty cart: got %v, want ErrConflict", err) // key k now free again
	}
	hold("other-body", time.Hour)
	if _, err := e.checkout("other-body", "k", nil, at); err != nil {
		t.Fatalf("first checkout of other-body: %v", err)
	}
	hold("ok-all", time.Hour)
	okIDs := hold("ok-ids", time.Hour)
	hold("expired", time.Second)
	hold("unknown", time.Hour)
	hold("twice", time.Hour)

	type want struct {
		err     error
		units   int  // units in the order
		created bool // a new order (else a replay or none)
	}
	cases := []struct {
		user, key string
		ids       []string
		want      want
	}{
		{"ok-all", "k", nil, want{units: 1, created: true}},
		{"sold", "second", []string{sold.ID}, want{err: ErrNotFound}},
		{"expired", "k", nil, want{err: ErrHoldExpired}},
		{"unknown", "k", []string{uuid.NewString()}, want{err: ErrNotFound}},
		{"ok-ids", "k", []string{okIDs.ID}, want{units: 1, created: true}},
		{"other-body", "k", []string{uuid.NewString()}, want{err: ErrConflict}},
		{"twice", "k", nil, want{units: 1, created: true}},
		{"twice", "k", nil, want{units: 1}}, // same key, same body: the same order
	}
	items := make([]*checkoutItem, len(cases))
	for i, c := range cases {
		call := &checkoutCall{req: CheckoutRequest{OrderID: uuid.NewString(), UserID: c.user, HoldIDs: c.ids,
			IdempotencyKey: c.key, Fingerprint: fmt.Sprint(c.ids)}, ih: idemHash(c.user, c.key), now: at}
		mode := "all"
		if c.ids != nil {
			mode = "ids"
		}
		items[i] = &checkoutItem{userID: c.user, index: true, args: call.args(mode, "", c.ids), done: make(chan struct{}, 1)}
	}
	st.checkoutBatch(sid, items)

	orders := map[string]string{}
	for i, c := range cases {
		it := items[i]
		if !errors.Is(it.err, c.want.err) || (c.want.err == nil) != (it.err == nil) {
			t.Errorf("%s: got error %v, want %v", c.user, it.err, c.want.err)
			continue
		}
		if c.want.err != nil {
			// (the batch answers an item's touched records in changes, not Sales)
			got, want := len(changesOf(&it.r).Sales), 0
			if c.user == "expired" {
				want = 1 // its hold went back to the sale
			}
			if got != want {
				t.Errorf("%s: a failed checkout answers %d changed sales %+v, want %d", c.user, got, changesOf(&it.r).Sales, want)
			}
			continue
		}
		o := it.r.orderOf()
		if len(o.Items) != 1 || o.Items[0].Quantity != c.want.units || o.UserID != c.user || it.r.Created != c.want.created {
			t.Errorf("%s: got order %+v created %v, want %d unit(s) of %s, created %v", c.user, o, it.r.Created, c.want.units, c.user, c.want.created)
		}
		if prev, ok := orders[c.user]; ok && prev != o.ID {
			t.Errorf("%s: the same key placed orders %s and %s, want one", c.user, prev, o.ID)
		}
		orders[c.user] = o.ID
		ch, wantSales := changesOf(&it.r), 0
		if c.want.created {
			wantSales = 1 // a replay changes nothing
		}
		if len(ch.Sales) != wantSales || (wantSales == 1 && ch.Sales[0].ID != sale.ID) {
			t.Errorf("%s: got changed sales %+v, want %d (the sale)", c.user, ch.Sales, wantSales)
		}
	}
	// The expired hold came back and left the cart; five units sold in all.
	got := e.getSale(t, sale.ID)
	if got.Sold != 5 || got.Held != 1 || got.Remaining != 4 {
		t.Errorf("sale after the batch: got sold %d held %d remaining %d, want 5, 1 (unknown's hold), 4", got.Sold, got.Held, got.Remaining)
	}
	if holds, err := st.ListHolds(e.ctx, "expired", at); err != nil || len(holds) != 0 {
		t.Errorf("expired's cart after the batch: got %d holds %v, want none", len(holds), err)
	}
	if holds, err := st.ListHolds(e.ctx, "unknown", at); err != nil || len(holds) != 1 || holds[0].Expired {
		t.Errorf("unknown's cart after its failed checkout: got %+v %v, want its live hold", holds, err)
	}
	for _, user := range []string{"ok-all", "ok-ids", "twice"} {
		if list, err := st.ListOrders(e.ctx, user); err != nil || len(list) != 1 || list[0].ID != orders[user] {
			t.Errorf("ListOrders(%s): got %+v %v, want its one order %s", user, list, err, orders[user])
		}
	}
	e.checkInvariants(t)
}

// TestRedisCheckoutStorm: concurrent checkouts of one stream (grouped in batches as
// they come), half of them failing on purpose, each answered on its own: every
// buyer with a live hold gets its order, every other one its error.
func TestRedisCheckoutStorm(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC(), putIn: map[string]int{}}
	sale := e.sale(t, e.stream(t), 400, 1)
	const buyers = 400
	holds := make([]Hold, buyers)
	for i := range holds {
		ttl := time.Hour
		if i%4 == 1 {
			ttl = time.Second // expired by the checkout
		}
		h, err := e.hold(fmt.Sprint("buyer-", i), "", sale.ID, 1, ttl)
		if err != nil {
			t.Fatalf("hold %d: %v", i, err)
		}
		holds[i] = h
	}
	at := e.now.Add(2 * time.Second)
	errs := make([]error, buyers)
	var wg sync.WaitGroup
	for i := range buyers {
		wg.Go(func() {
			var ids []string
			if i%4 == 2 {
				ids = []string{uuid.NewString()} // unknown
			}
			_, errs[i] = e.checkout(fmt.Sprint("buyer-", i), "k", ids, at)
		})
	}
	wg.Wait()
	want := map[int]error{1: ErrHoldExpired, 2: ErrNotFound}
	for i, err := range errs {
		if w := want[i%4]; !errors.Is(err, w) || (w == nil) != (err == nil) {
			t.Errorf("buyer %d: got %v, want %v", i, err, w)
		}
	}
	if got := e.getSale(t, sale.ID); got.Sold != buyers/2 || got.Held != buyers/4 {
		t.Errorf("sale: got sold %d held %d, want %d and %d", got.Sold, got.Held, buyers/2, buyers/4)
	}
	e.checkInvariants(t)
}
