package cart

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// itemTestRedisURL: the batch item tests plant keys of the wrong type, in a db of
// their own (under a random prefix still).
var itemTestRedisURL = cmp.Or(os.Getenv("LIVECART_TEST_REDIS_URL"), "redis://127.0.0.1:6379/12")

// wantItemFailed checks that err is the plain error of a batch item that failed at
// runtime (500 for that caller): not a business error, not ErrUnavailable.
func wantItemFailed(t *testing.T, who string, err error) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("%s: got error %v, want the item's WRONGTYPE error", who, err)
		return
	}
	for code, sentinel := range businessErrors {
		if errors.Is(err, sentinel) {
			t.Errorf("%s: got %v, a business error (%s), want a plain error", who, err, code)
		}
	}
	if errors.Is(err, ErrUnavailable) {
		t.Errorf("%s: got %v, want a plain error, not ErrUnavailable", who, err)
	}
}

// TestRedisHoldBatchItemFails: a hold that fails at runtime in the middle of a batch
// (a key of the wrong type planted in Redis: before its first write, and after its
// hold is recorded) fails alone; the holds before and after it succeed and the
// counters written after the batch match the holds that exist.
func TestRedisHoldBatchItemFails(t *testing.T) {
	st := openTestRedis(t, itemTestRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	p := e.product(t, sid, 10)
	sale := e.sale(t, sid, 5, 5)
	badHold := uuid.NewString()
	// bad-hold's cart has the older form (a list), whose holds are keys of their own:
	// its hold's key is a string.
	if err := st.rdb.Set(e.ctx, st.base(sid)+"h:"+badHold, "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := st.rdb.RPush(e.ctx, st.base(sid)+"uh:bad-hold", "an-older-hold").Err(); err != nil {
		t.Fatal(err)
	}
	if err := st.rdb.Set(e.ctx, st.base(sid)+"uh:bad-cart", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	reqs := []HoldRequest{
		{ID: uuid.NewString(), UserID: "a", ProductID: p.ID, Quantity: 2},
		{ID: badHold, UserID: "bad-hold", SaleID: sale.ID, Quantity: 1}, // fails before writing
		{ID: uuid.NewString(), UserID: "b", SaleID: sale.ID, Quantity: 1},
		{ID: uuid.NewString(), UserID: "bad-cart", ProductID: p.ID, Quantity: 1}, // fails once recorded
		{ID: uuid.NewString(), UserID: "c", ProductID: p.ID, Quantity: 1},
	}
	calls := make([]*holdCall, len(reqs))
	for i, r := range reqs {
		r.ExpiresAt = e.now.Add(time.Hour)
		calls[i] = &holdCall{req: r, now: e.now, done: make(chan struct{}, 1)}
	}
	st.holdBatch(sid, calls)

	for i, c := range calls {
		switch who := c.req.UserID; who {
		case "bad-hold", "bad-cart":
			wantItemFailed(t, who, c.err)
		default:
			if c.err != nil || c.hold.ID != c.req.ID || c.hold.Quantity != c.req.Quantity {
				t.Errorf("hold %d of %s: got %+v %v, want hold %s of %d unit(s)", i, who, c.hold, c.err, c.req.ID, c.req.Quantity)
			}
		}
	}
	// bad-cart's hold was recorded before its cart refused it: it counts (and expires).
	if got := e.getProduct(t, p.ID); got.Stock != 6 || got.Held != 4 {
		t.Errorf("product: got stock %d held %d, want 6 4 (holds of a, bad-cart and c)", got.Stock, got.Held)
	}
	if got := e.getSale(t, sale.ID); got.Remaining != 4 || got.Held != 1 {
		t.Errorf("sale: got remaining %d held %d, want 4 1 (the hold of b)", got.Remaining, got.Held)
	}
	// (The sale's counts also hold a field of value "0" that keeps the hash out of
	// Redis's listpack encoding: see lua/sale_create.lua.)
	used, err := st.rdb.HGetAll(e.ctx, st.base(sid)+"su:"+sale.ID).Result()
	n := 0
	for _, v := range used {
		if v != "0" {
			n++
		}
	}
	if err != nil || n != 1 || used["b"] != "1" {
		t.Errorf("users counted in the sale: got %v %v, want b with 1 unit", used, err)
	}
	e.checkInvariants(t)
}

// TestRedisCheckoutBatchItemFails: a checkout that fails at runtime in the middle of
// a batch (a key of the wrong type: its idempotency record, of the older form, before
// any write; its order list once its order is recorded) fails alone; the others place their orders
// and the sold and held counters match the orders and holds that exist.
func TestRedisCheckoutBatchItemFails(t *testing.T) {
	st := openTestRedis(t, itemTestRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	p := e.product(t, sid, 10)
	sale := e.sale(t, sid, 10, 5)
	users := []string{"a", "bad-idem", "b", "bad-orders", "c"}
	for _, u := range users {
		if _, err := e.hold(u, p.ID, "", 1, time.Hour); err != nil {
			t.Fatalf("product hold of %s: %v", u, err)
		}
		if _, err := e.hold(u, "", sale.ID, 2, time.Hour); err != nil {
			t.Fatalf("sale hold of %s: %v", u, err)
		}
	}
	// bad-idem's orders here have the older form (a list), whose key records are
	// strings: its record is a hash.
	if err := st.rdb.HSet(e.ctx, st.base(sid)+"idem:"+idemHash("bad-idem", "k"), "x", "y").Err(); err != nil {
		t.Fatal(err)
	}
	if err := st.rdb.RPush(e.ctx, st.base(sid)+"uo:bad-idem", "an-older-order").Err(); err != nil {
		t.Fatal(err)
	}
	if err := st.rdb.Set(e.ctx, st.base(sid)+"uo:bad-orders", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	at := e.now.Add(time.Second)
	items := make([]*checkoutItem, len(users))
	for i, u := range users {
		call := &checkoutCall{req: CheckoutRequest{OrderID: uuid.NewString(), UserID: u, IdempotencyKey: "k",
			Fingerprint: fmt.Sprint([]string(nil))}, ih: idemHash(u, "k"), now: at}
		items[i] = &checkoutItem{userID: u, index: true, args: call.args("all", "", nil), done: make(chan struct{}, 1)}
	}
	st.checkoutBatch(sid, items)

	for i, u := range users {
		it := items[i]
		if strings.HasPrefix(u, "bad-") {
			wantItemFailed(t, u, it.err)
			continue
		}
		o := it.r.orderOf()
		if it.err != nil || !it.r.Created || o.UserID != u || len(o.Items) != 2 {
			t.Errorf("checkout of %s: got order %+v created %v, error %v; want a new order of 2 items", u, o, it.r.Created, it.err)
		}
	}
	// bad-idem's holds stay (held); bad-orders' order was recorded before its order
	// list refused it: its units count as sold.
	if got := e.getProduct(t, p.ID); got.Stock != 5 || got.Held != 1 || got.Sold != 4 {
		t.Errorf("product: got stock %d held %d sold %d, want 5 1 4", got.Stock, got.Held, got.Sold)
	}
	if got := e.getSale(t, sale.ID); got.Remaining != 0 || got.Held != 2 || got.Sold != 8 {
		t.Errorf("sale: got remaining %d held %d sold %d, want 0 2 8", got.Remaining, got.Held, got.Sold)
	}
	orders, err := st.ListStreamOrders(e.ctx, sid)
	if err != nil || len(orders) != 4 {
		t.Errorf("stream orders: got %d %v, want 4 (a, b, bad-orders, c)", len(orders), err)
	}
	held := 0
	for _, u := range users {
		hs, err := st.rdb.HLen(e.ctx, st.base(sid)+"uh:"+u).Result()
		if err != nil {
			t.Fatalf("cart of %s: %v", u, err)
		}
		held += int(hs)
	}
	if held != 2 {
		t.Errorf("holds left in the carts: got %d, want 2 (bad-idem's)", held)
	}
	e.checkInvariants(t)
}

// TestRedisSaleCountsAreAHashtable: a new sale's per-user counts are kept in Redis's
// hashtable encoding from the start (see lua/sale_create.lua): as a listpack, each
// hold's HINCRBY scanned every user before it (~30k of redis-server's instructions
// per hold at 256 users). Its padding field counts as a user with no units: the
// limit is the same for a user whose id it is.
func TestRedisSaleCountsAreAHashtable(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 2)
	key := st.base(sid) + "su:" + sale.ID
	if enc, err := st.rdb.ObjectEncoding(e.ctx, key).Result(); err != nil || enc != "hashtable" {
		t.Errorf("a new sale's counts: encoding %q %v, want hashtable", enc, err)
	}
	pad, err := st.rdb.HKeys(e.ctx, key).Result()
	if err != nil || len(pad) != 1 {
		t.Fatalf("a new sale's counts: fields %q %v, want the padding field alone", pad, err)
	}
	for i, want := range []error{nil, nil, ErrLimitExceeded} {
		if _, err := e.hold(pad[0], "", sale.ID, 1, time.Minute); !errors.Is(err, want) {
			t.Errorf("hold %d of the user named like the padding field: %v, want %v", i+1, err, want)
		}
	}
	if enc, err := st.rdb.ObjectEncoding(e.ctx, key).Result(); err != nil || enc != "hashtable" {
		t.Errorf("after the holds: encoding %q %v, want hashtable", enc, err)
	}
	e.checkInvariants(t)
}
