package cart

import (
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// toOlderForm rewrites a record of a hold or an order (one packed field d) into the
// form written before 2026-12-02: a field each, with id, stream_id and, for a hold,
// state "live".
func toOlderForm(t *testing.T, st *RedisStore, sid, k string, expand func(map[string]string)) {
	t.Helper()
	ctx := t.Context()
	m, err := st.rdb.HGetAll(ctx, k).Result()
	if err != nil || m["d"] == "" {
		t.Fatalf("record %s: got %v %v, want one in the packed form", k, m, err)
	}
	expand(m)
	if _, ok := m["state"]; !ok && m["status"] == "" {
		m["state"] = "live" // a hold
	}
	m["stream_id"] = sid
	args := []any{}
	for f, v := range m {
		args = append(args, f, v)
	}
	if err := st.rdb.Del(ctx, k).Err(); err != nil {
		t.Fatal(err)
	}
	if err := st.rdb.HSet(ctx, k, args...).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestRedisOlderRecords: holds and orders recorded in the older form (a field each)
// are listed, checked out, released and replayed as before.
func TestRedisOlderRecords(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC().Truncate(time.Second), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 5)
	h1, err := e.hold("u|1", "", sale.ID, 2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := e.hold("u|1", "", sale.ID, 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	toOlderCart(t, st, sid, "u|1")
	for _, h := range []Hold{h1, h2} {
		toOlderForm(t, st, sid, st.base(sid)+"h:"+h.ID, func(m map[string]string) {
			expandHold(m)
			m["id"] = h.ID
		})
	}
	holds, err := st.ListHolds(e.ctx, "u|1", e.now)
	if err != nil || len(holds) != 2 || !reflect.DeepEqual(holds[0], h1) || !reflect.DeepEqual(holds[1], h2) {
		t.Errorf("ListHolds: got %+v %v, want %+v and %+v", holds, err, h1, h2)
	}
	at := e.now.Add(2 * time.Second)
	if n, _, err := st.ReleaseExpiredHolds(e.ctx, at, 0); err != nil || n != 1 {
		t.Errorf("ReleaseExpiredHolds: got %d %v, want 1 (h2)", n, err)
	}
	res, err := e.checkout("u|1", "k", nil, at)
	if err != nil || len(res.Order.Items) != 1 || res.Order.Items[0].Quantity != 2 || res.Order.UserID != "u|1" ||
		!reflect.DeepEqual(res.Order.ExpiredHoldIDs, []string{h2.ID}) {
		t.Fatalf("checkout: got %+v %v, want 2 units of h1, h2 expired", res.Order, err)
	}
	o := res.Order
	toOlderOrders(t, st, sid, "u|1")
	toOlderForm(t, st, sid, st.base(sid)+"o:"+o.ID, expandOrder)
	list, err := st.ListOrders(e.ctx, "u|1")
	if err != nil || len(list) != 1 || !reflect.DeepEqual(list[0], o) {
		t.Errorf("ListOrders: got %+v %v, want %+v", list, err, o)
	}
	if list, err := st.ListStreamOrders(e.ctx, sid); err != nil || len(list) != 1 || !reflect.DeepEqual(list[0], o) {
		t.Errorf("ListStreamOrders: got %+v %v, want %+v", list, err, o)
	}
	again, err := e.checkout("u|1", "k", nil, at.Add(time.Second))
	if err != nil || !reflect.DeepEqual(again.Order, o) || again.Created {
		t.Errorf("replay: got %+v created %v %v, want %+v", again.Order, again.Created, err, o)
	}
	if got := e.getSale(t, sale.ID); got.Sold != 2 || got.Held != 0 || got.Remaining != 8 {
		t.Errorf("sale: got sold %d held %d remaining %d, want 2 0 8", got.Sold, got.Held, got.Remaining)
	}
	e.checkInvariants(t)
}

// TestRedisPackedUserIDs: a user id with "|" (where the packed records join their
// fields), empty parts and a newline is kept whole in a hold's and an order's record.
func TestRedisPackedUserIDs(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC().Truncate(time.Second), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 5)
	for _, uid := range []string{"|", "||a||\n|", "u|1|2|3|4|5|6|7|8|9|10|11"} {
		h, err := e.hold(uid, "", sale.ID, 1, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		holds, err := st.ListHolds(e.ctx, uid, e.now)
		if err != nil || len(holds) != 1 || !reflect.DeepEqual(holds[0], h) || holds[0].UserID != uid {
			t.Errorf("%q: ListHolds: got %+v %v, want %+v", uid, holds, err, h)
		}
		res, err := e.checkout(uid, "k", nil, e.now)
		if err != nil || !res.Created || res.Order.UserID != uid || len(res.Order.Items) != 1 {
			t.Fatalf("%q: checkout: got %+v %v", uid, res.Order, err)
		}
		list, err := st.ListOrders(e.ctx, uid)
		if err != nil || len(list) != 1 || !reflect.DeepEqual(list[0], res.Order) {
			t.Errorf("%q: ListOrders: got %+v %v, want %+v", uid, list, err, res.Order)
		}
		again, err := e.checkout(uid, "k", nil, e.now.Add(time.Second))
		if err != nil || again.Created || !reflect.DeepEqual(again.Order, res.Order) {
			t.Errorf("%q: replay: got %+v %v, want %+v", uid, again.Order, err, res.Order)
		}
	}
	e.checkInvariants(t)
}

// previousHoldRecord is hold record d (see hold_record in lua/lib.lua) of user uid in
// the form written from 2026-12-02 to 12-06 (a released one's "-" kept):
// product_id|sale_id|quantity|unit_price_cents|currency|expires_at|expires_us|
// created_us|seq|user_id. A record of that form stays as it is.
func previousHoldRecord(d, uid string) string {
	released, d := strings.HasPrefix(d, "-"), strings.TrimPrefix(d, "-")
	item, rest, _ := strings.Cut(d, "|")
	if strings.IndexByte(item, ',') < 0 {
		return map[bool]string{true: "-"}[released] + d
	}
	it, f := strings.SplitN(item, ",", 4), strings.SplitN(rest, "|", 4)
	at := formatTime(time.UnixMicro(atoi64(f[1])))
	out := strings.Join([]string{it[0], it[1], it[2], it[3], f[0], at, f[1], f[2], f[3], uid}, "|")
	if released {
		return "-" + out
	}
	return out
}

// previousOrderRecord is order oid's record d (see place_order in lua/checkout.lua) in
// the form written from 2026-12-02 to 12-06: id|stream_id|total_cents|currency|status|
// created_at|created_us|seq|items|expired|user_id. A record of that form stays as it is.
func previousOrderRecord(d, oid, sid, uid string) string {
	rest, ok := strings.CutPrefix(d, "|")
	if !ok {
		return d
	}
	f := strings.SplitN(rest, "|", 7)
	at := formatTime(time.UnixMicro(atoi64(f[2])))
	return strings.Join([]string{oid, sid, f[0], f[1], "placed", at, f[2], f[3], f[4], f[5], uid}, "|")
}

// toPreviousRecords rewrites the records of the user's cart and orders in stream sid
// (the hashes uh:<uid> and uo:<uid>) into the form written from 2026-12-02 to 12-06
// (previousHoldRecord, previousOrderRecord).
func toPreviousRecords(t *testing.T, st *RedisStore, sid, uid string) {
	t.Helper()
	ctx := t.Context()
	for _, k := range []string{"uh:", "uo:"} {
		m, err := st.rdb.HGetAll(ctx, st.base(sid)+k+uid).Result()
		if err != nil {
			t.Fatal(err)
		}
		for f, v := range m {
			switch {
			case k == "uh:":
				v = previousHoldRecord(v, uid)
			case !strings.HasPrefix(f, "k:"):
				v = previousOrderRecord(v, f, sid, uid)
			}
			if err := st.rdb.HSet(ctx, st.base(sid)+k+uid, f, v).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// toOlderOrders rewrites the user's orders in stream sid into the form written before
// 2026-12-04 (see lua/checkout.lua): the list uo:<uid> of order ids, each order the
// hash o:<oid> (field d), each key record the string idem:<hash> (24 h), the stream's
// order list naming each by its id.
func toOlderOrders(t *testing.T, st *RedisStore, sid, uid string) {
	t.Helper()
	ctx := t.Context()
	uo := st.base(sid) + "uo:" + uid
	m, err := st.rdb.HGetAll(ctx, uo).Result()
	if err != nil || len(m) == 0 {
		t.Fatalf("orders of %s: got %v %v, want the hash form", uid, m, err)
	}
	if err := st.rdb.Del(ctx, uo).Err(); err != nil {
		t.Fatal(err)
	}
	for f, v := range m {
		if ih, ok := strings.CutPrefix(f, "k:"); ok {
			err = st.rdb.Set(ctx, st.base(sid)+"idem:"+ih, v, IdempotencyTTL).Err()
		} else if err = st.rdb.HSet(ctx, st.base(sid)+"o:"+f, "d", previousOrderRecord(v, f, sid, uid)).Err(); err == nil {
			err = st.rdb.RPush(ctx, uo, f).Err()
			if err == nil {
				err = st.rdb.LRem(ctx, st.base(sid)+"orders", 0, f+" "+uid).Err()
			}
			if err == nil {
				err = st.rdb.RPush(ctx, st.base(sid)+"orders", f).Err()
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestRedisOlderOrderForm: a user whose orders in a stream have the form written
// before 2026-12-04 (toOlderOrders) gets them listed and replayed, by the done mark
// and by the key's record in the stream (the user's mark past its time and taken
// over: cart.lua and the checkout script read it), and orders there again in that form; another user's orders in the
// same stream have the newer form, and the stream lists both.
func TestRedisOlderOrderForm(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC().Truncate(time.Second), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 5)
	e.mustHold(t, "u", "", sale.ID, 1, time.Hour)
	res, err := e.checkout("u", "k", nil, e.now)
	if err != nil || !res.Created {
		t.Fatalf("checkout: %+v %v", res, err)
	}
	st.background.Wait()
	o := res.Order
	toOlderOrders(t, st, sid, "u")
	ih := idemHash("u", "k")
	mark := st.userBase("u") + "idem:" + ih
	replay := func(what string) {
		t.Helper()
		again, err := e.checkout("u", "k", nil, e.now.Add(time.Second))
		if err != nil || again.Created || !reflect.DeepEqual(again.Order, o) {
			t.Errorf("replay %s: got %+v created %v %v, want %+v", what, again.Order, again.Created, err, o)
		}
		st.background.Wait()
	}
	replay("by the done mark")
	if err := st.rdb.Set(e.ctx, mark, "pending|tok|[]|1", IdempotencyTTL).Err(); err != nil {
		t.Fatal(err)
	}
	replay("by the stream's record (the mark taken over)")

	e.mustHold(t, "u", "", sale.ID, 1, time.Hour)
	res2, err := e.checkout("u", "k2", nil, e.now)
	if err != nil || !res2.Created {
		t.Fatalf("second checkout: %+v %v", res2, err)
	}
	if typ := st.rdb.Type(e.ctx, st.base(sid)+"uo:u").Val(); typ != "list" {
		t.Errorf("u's orders after an order: a %s, want the older list", typ)
	}
	if n := st.rdb.Exists(e.ctx, st.base(sid)+"o:"+res2.Order.ID, st.base(sid)+"idem:"+idemHash("u", "k2")).Val(); n != 2 {
		t.Errorf("the second order's record and key record in the older form: %d of 2", n)
	}
	e.mustHold(t, "v", "", sale.ID, 1, time.Hour)
	res3, err := e.checkout("v", "k", nil, e.now)
	if err != nil || !res3.Created {
		t.Fatalf("v's checkout: %+v %v", res3, err)
	}
	if typ := st.rdb.Type(e.ctx, st.base(sid)+"uo:v").Val(); typ != "hash" {
		t.Errorf("v's orders: a %s, want the hash", typ)
	}
	list, err := st.ListOrders(e.ctx, "u")
	if err != nil || len(list) != 2 || !reflect.DeepEqual(list[0], o) || !reflect.DeepEqual(list[1], res2.Order) {
		t.Errorf("ListOrders: got %+v %v, want %+v and %+v", list, err, o, res2.Order)
	}
	all, err := st.ListStreamOrders(e.ctx, sid)
	if err != nil || len(all) != 3 || !reflect.DeepEqual(all[2], res3.Order) {
		t.Errorf("ListStreamOrders: got %+v %v, want 3, v's last", all, err)
	}
	e.checkInvariants(t)
}

// toOlderCart rewrites the user's cart in stream sid into the form written before
// 2026-12-04 (see lua/lib.lua): the list uh:<uid> of hold ids, oldest first, each hold
// the hash h:<id> (d, and state "expired" once released).
func toOlderCart(t *testing.T, st *RedisStore, sid, uid string) {
	t.Helper()
	ctx := t.Context()
	uh := st.base(sid) + "uh:" + uid
	m, err := st.rdb.HGetAll(ctx, uh).Result()
	if err != nil || len(m) == 0 {
		t.Fatalf("cart of %s: got %v %v, want the hash form", uid, m, err)
	}
	type hold struct{ id, d, state, created, seq string }
	var hs []hold
	for id, v := range m {
		h := hold{id: id, d: v}
		if d, ok := strings.CutPrefix(v, "-"); ok {
			h.d, h.state = d, "expired"
		}
		h.d = previousHoldRecord(h.d, uid)
		f := strings.SplitN(h.d, "|", 10)
		h.created, h.seq = f[7], f[8]
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool {
		if hs[i].created != hs[j].created {
			return hs[i].created < hs[j].created
		}
		return hs[i].seq < hs[j].seq
	})
	if err := st.rdb.Del(ctx, uh).Err(); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		args := []any{"d", h.d}
		if h.state != "" {
			args = append(args, "state", h.state)
		}
		if err := st.rdb.HSet(ctx, st.base(sid)+"h:"+h.id, args...).Err(); err != nil {
			t.Fatal(err)
		}
		if err := st.rdb.RPush(ctx, uh, h.id).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRedisOlderCartForm: a user's cart of the form written before 2026-12-04 (a list
// of hold ids, each hold its own key: toOlderCart) takes new holds in that form, gives
// them up by RemoveHold and by the sweep (whose entries name the user since), orders
// them all, oldest first; the next hold there starts a cart of the newer form (a
// hash), which RemoveHold finds too.
func TestRedisOlderCartForm(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC().Truncate(time.Second), putIn: map[string]int{}}
	sid := e.stream(t)
	p := e.product(t, sid, 10)
	uh := st.base(sid) + "uh:u"
	h1 := e.mustHold(t, "u", p.ID, "", 1, time.Hour)
	toOlderCart(t, st, sid, "u")
	h2 := e.mustHold(t, "u", p.ID, "", 2, time.Hour)
	h3 := e.mustHold(t, "u", p.ID, "", 3, time.Hour)
	h4 := e.mustHold(t, "u", p.ID, "", 1, time.Second)
	if typ := st.rdb.Type(e.ctx, uh).Val(); typ != "list" {
		t.Fatalf("the cart after new holds: a %s, want the older list", typ)
	}
	if n := st.rdb.Exists(e.ctx, st.base(sid)+"h:"+h2.ID, st.base(sid)+"h:"+h3.ID).Val(); n != 2 {
		t.Fatalf("the new holds' own keys: %d of 2", n)
	}
	if _, err := st.RemoveHold(e.ctx, "u", h2.ID, e.now); err != nil {
		t.Fatalf("RemoveHold of a hold of the older form: %v", err)
	}
	if n, _, err := st.ReleaseExpiredHolds(e.ctx, e.now.Add(2*time.Second), 0); err != nil || n != 1 {
		t.Fatalf("ReleaseExpiredHolds: %d %v, want h4 released", n, err)
	}
	if got := e.getProduct(t, p.ID); got.Stock != 6 || got.Held != 4 {
		t.Errorf("product: stock %d held %d, want 6 4 (h1 and h3)", got.Stock, got.Held)
	}
	res, err := e.checkout("u", "k", nil, e.now.Add(2*time.Second))
	if err != nil || len(res.Order.Items) != 2 || res.Order.Items[0].Quantity != 1 || res.Order.Items[1].Quantity != 3 ||
		!reflect.DeepEqual(res.Order.ExpiredHoldIDs, []string{h4.ID}) {
		t.Fatalf("checkout: %+v %v, want h1 and h3 in that order, h4 expired", res.Order, err)
	}
	if n := st.rdb.Exists(e.ctx, uh, st.base(sid)+"h:"+h1.ID, st.base(sid)+"h:"+h3.ID).Val(); n != 0 {
		t.Errorf("after the order: %d of the cart and its holds' keys left, want none", n)
	}
	h5 := e.mustHold(t, "u", p.ID, "", 1, time.Hour)
	if typ := st.rdb.Type(e.ctx, uh).Val(); typ != "hash" {
		t.Fatalf("the cart after the order and a new hold: a %s, want the hash", typ)
	}
	if _, err := st.RemoveHold(e.ctx, "u", h5.ID, e.now); err != nil {
		t.Fatalf("RemoveHold of a hold of the newer form: %v", err)
	}
	if got := e.getProduct(t, p.ID); got.Stock != 6 || got.Held != 0 || got.Sold != 4 {
		t.Errorf("product: stock %d held %d sold %d, want 6 0 4", got.Stock, got.Held, got.Sold)
	}
	e.checkInvariants(t)
}

// TestRedisRecordForms: a hold's record in the user's cart and an order's in the
// user's orders have the form of 2026-12-06 (see hold_record in lua/lib.lua and
// place_order in lua/checkout.lua): what their field, key and times in µs say already
// left out.
func TestRedisRecordForms(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 5)
	h := e.mustHold(t, "u|1", "", sale.ID, 2, time.Minute)
	exp := e.now.Add(time.Minute)
	if !h.ExpiresAt.Equal(exp.Truncate(time.Microsecond)) || h.ExpiresAt != time.UnixMicro(exp.UnixMicro()).UTC() {
		t.Errorf("the hold's expires_at: %v, want %v to the µs", h.ExpiresAt, exp)
	}
	d := st.rdb.HGet(e.ctx, st.base(sid)+"uh:u|1", h.ID).Val()
	want := sale.ProductID + "," + sale.ID + ",2,500|EUR|" + micros(exp) + "|" + micros(e.now) + "|"
	if !strings.HasPrefix(d, want) || strings.Count(d, "|") != 4 {
		t.Errorf("the hold's record: %q, want %s<seq>", d, want)
	}
	res, err := e.checkout("u|1", "k", nil, e.now)
	if err != nil || !res.Created || res.Order.CreatedAt != time.UnixMicro(e.now.UnixMicro()).UTC() {
		t.Fatalf("checkout: %+v %v, want an order created at %v to the µs", res.Order, err, e.now)
	}
	d = st.rdb.HGet(e.ctx, st.base(sid)+"uo:u|1", res.Order.ID).Val()
	want = "|1000|EUR|" + micros(e.now) + "|"
	if !strings.HasPrefix(d, want) || !strings.HasSuffix(d, "|"+sale.ProductID+","+sale.ID+",2,500|") || strings.Count(d, "|") != 6 {
		t.Errorf("the order's record: %q, want %s<seq>|%s,%s,2,500|", d, want, sale.ProductID, sale.ID)
	}
	got, err := st.getOrder(e.ctx, "u|1", sid, res.Order.ID)
	if err != nil || !reflect.DeepEqual(got, res.Order) {
		t.Errorf("getOrder: %+v %v, want %+v", got, err, res.Order)
	}
	e.checkInvariants(t)
}

// TestRedisPreviousRecordsAfterUpgrade: holds and orders recorded in the form written
// from 2026-12-02 to 12-06 (toPreviousRecords: every field in the record, expires_at
// and created_at in RFC 3339) are listed, retried, released, checked out (the usual
// checkout of one such hold takes the general path), read and replayed as before,
// beside records of the newer form.
func TestRedisPreviousRecordsAfterUpgrade(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 5)
	p := e.product(t, sid, 10)
	h1 := e.mustHold(t, "u|1", "", sale.ID, 2, time.Hour)
	h2 := e.mustHold(t, "u|1", p.ID, "", 1, time.Hour)
	h3 := e.mustHold(t, "u|1", "", sale.ID, 1, time.Second)
	e.mustHold(t, "w", "", sale.ID, 1, time.Hour)
	toPreviousRecords(t, st, sid, "u|1")
	toPreviousRecords(t, st, sid, "w")
	if d := st.rdb.HGet(e.ctx, st.base(sid)+"uh:u|1", h1.ID).Val(); !strings.HasPrefix(d, sale.ProductID+"|"+sale.ID+"|2|500|EUR|20") {
		t.Fatalf("h1's record: %q, want the previous form", d)
	}
	holds, err := st.ListHolds(e.ctx, "u|1", e.now)
	if err != nil || len(holds) != 3 || !reflect.DeepEqual(holds, []Hold{h1, h2, h3}) {
		t.Errorf("ListHolds: got %+v %v, want %+v", holds, err, []Hold{h1, h2, h3})
	}
	again, _, err := st.HoldUnits(e.ctx, HoldRequest{ID: h1.ID, UserID: "u|1", SaleID: sale.ID, Quantity: 2, ExpiresAt: e.now.Add(time.Hour)}, e.now)
	if err != nil || !reflect.DeepEqual(again, h1) {
		t.Errorf("the hold again (a retry): got %+v %v, want %+v", again, err, h1)
	}
	at := e.now.Add(2 * time.Second)
	if n, _, err := st.ReleaseExpiredHolds(e.ctx, at, 0); err != nil || n != 1 {
		t.Errorf("ReleaseExpiredHolds: got %d %v, want 1 (h3)", n, err)
	}
	rw, err := e.checkout("w", "k", nil, at)
	if err != nil || !rw.Created || len(rw.Order.Items) != 1 ||
		rw.Order.Items[0] != (OrderItem{ProductID: sale.ProductID, SaleID: sale.ID, Quantity: 1, UnitPriceCents: 500}) {
		t.Fatalf("w's checkout: %+v %v, want its one unit", rw.Order, err)
	}
	ru, err := e.checkout("u|1", "k", nil, at)
	if err != nil || !ru.Created || len(ru.Order.Items) != 2 || ru.Order.TotalCents != 2000 ||
		!reflect.DeepEqual(ru.Order.ExpiredHoldIDs, []string{h3.ID}) {
		t.Fatalf("u|1's checkout: %+v %v, want h1 and h2, h3 expired", ru.Order, err)
	}
	toPreviousRecords(t, st, sid, "u|1")
	toPreviousRecords(t, st, sid, "w")
	if d := st.rdb.HGet(e.ctx, st.base(sid)+"uo:w", rw.Order.ID).Val(); !strings.HasPrefix(d, rw.Order.ID+"|"+sid+"|500|EUR|placed|") {
		t.Fatalf("w's order's record: %q, want the previous form", d)
	}
	for _, o := range []Order{rw.Order, ru.Order} {
		list, err := st.ListOrders(e.ctx, o.UserID)
		if err != nil || len(list) != 1 || !reflect.DeepEqual(list[0], o) {
			t.Errorf("ListOrders(%s): got %+v %v, want %+v", o.UserID, list, err, o)
		}
		if got, err := st.getOrder(e.ctx, o.UserID, sid, o.ID); err != nil || !reflect.DeepEqual(got, o) {
			t.Errorf("getOrder(%s): got %+v %v, want %+v", o.UserID, got, err, o)
		}
		r, err := e.checkout(o.UserID, "k", nil, at.Add(time.Second))
		if err != nil || r.Created || !reflect.DeepEqual(r.Order, o) {
			t.Errorf("replay (%s): got %+v created %v %v, want %+v", o.UserID, r.Order, r.Created, err, o)
		}
	}
	all, err := st.ListStreamOrders(e.ctx, sid)
	if err != nil || len(all) != 2 || !reflect.DeepEqual(all, []Order{rw.Order, ru.Order}) {
		t.Errorf("ListStreamOrders: got %+v %v, want w's and u|1's", all, err)
	}
	if got := e.getSale(t, sale.ID); got.Sold != 3 || got.Held != 0 || got.Remaining != 7 {
		t.Errorf("sale: sold %d held %d remaining %d, want 3 0 7", got.Sold, got.Held, got.Remaining)
	}
	e.checkInvariants(t)
}
