package cart

import (
	"reflect"
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
