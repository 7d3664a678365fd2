package cart

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// orderOneConditions are the lines of lua/checkout.lua that send the usual checkout
// (a cart of one live hold; a cart of each form) through order_one instead of the
// general path, and what stands for each without it.
var orderOneConditions = [][2]string{
	{"elseif #c == 2 and not listed and mode == 'all' and string.byte(c[2]) ~= 45 then", "elseif false then"},
	{"if c.err and not listed and mode == 'all' and #cart == 1 then", "if false then"},
	{"local it, tc, cur, prod, sale = usual_one(at, base, sj)", "local it, tc, cur, prod, sale"},
}

// generalCheckoutScript is lua/checkout.lua (with lib.lua) without the order_one fast
// path: every checkout takes the general path.
func generalCheckoutScript(t *testing.T) *redis.Script {
	t.Helper()
	lib, err := luaFiles.ReadFile("lua/lib.lua")
	if err != nil {
		t.Fatal(err)
	}
	src, err := luaFiles.ReadFile("lua/checkout.lua")
	if err != nil {
		t.Fatal(err)
	}
	general := string(src)
	for _, c := range orderOneConditions {
		if n := strings.Count(general, c[0]); n != 1 {
			t.Fatalf("lua/checkout.lua: %d lines %q, want 1 (update the test)", n, c[0])
		}
		general = strings.Replace(general, c[0], c[1], 1)
	}
	return redis.NewScript(string(lib) + "\n" + general)
}

// copyKeys copies every key under from's prefix to to's prefix (DUMP and RESTORE, TTLs
// kept): the same records, ids and counters under another prefix.
func copyKeys(t *testing.T, ctx context.Context, from, to *RedisStore) {
	t.Helper()
	iter := from.rdb.Scan(ctx, 0, from.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		dump, err := from.rdb.Dump(ctx, k).Result()
		if err != nil {
			t.Fatalf("DUMP %s: %v", k, err)
		}
		ttl, err := from.rdb.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl < 0 {
			ttl = 0
		}
		if err := to.rdb.RestoreReplace(ctx, to.prefix+strings.TrimPrefix(k, from.prefix), ttl, dump).Err(); err != nil {
			t.Fatalf("RESTORE %s: %v", k, err)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
}

// keyDump is every key under the store's prefix (the prefix cut off) with its type and
// value as text; TTLs only as whether the key has one.
func keyDump(t *testing.T, ctx context.Context, st *RedisStore) map[string]string {
	t.Helper()
	out := map[string]string{}
	iter := st.rdb.Scan(ctx, 0, st.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		typ := st.rdb.Type(ctx, k).Val()
		var v any
		var err error
		switch typ {
		case "string":
			v, err = st.rdb.Get(ctx, k).Result()
		case "hash":
			v, err = st.rdb.HGetAll(ctx, k).Result()
		case "list":
			v, err = st.rdb.LRange(ctx, k, 0, -1).Result()
		case "set":
			var m []string
			m, err = st.rdb.SMembers(ctx, k).Result()
			slices.Sort(m)
			v = m
		case "zset":
			v, err = st.rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		default:
			t.Fatalf("key %s: type %q", k, typ)
		}
		if err != nil {
			t.Fatalf("read %s: %v", k, err)
		}
		b, _ := json.Marshal(v)
		out[strings.TrimPrefix(k, st.prefix)] = fmt.Sprintf("%s %s ttl:%v", typ, b, st.rdb.PTTL(ctx, k).Val() > 0)
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// itemAnswer is a batch item's answer as text: its error and every field the Go side
// reads (values of the touched sales and products only if values).
func itemAnswer(it *checkoutItem, values bool) string {
	ch := changesOf(&it.r)
	var touched any = ch
	if !values {
		var ids []string
		for _, p := range ch.Products {
			ids = append(ids, "p:"+p.ID)
		}
		for _, s := range ch.Sales {
			ids = append(ids, "s:"+s.ID)
		}
		touched = ids
	}
	o, _ := json.Marshal(it.r.orderOf())
	c, _ := json.Marshal(touched)
	return fmt.Sprintf("err=%v e=%q m=%q cleared=%q created=%v swept=%v empty=%v\n order=%s\n touched=%s",
		it.err, it.r.Err, it.r.Msg, it.r.Cleared, it.r.Created, it.r.Swept, it.r.Empty, o, c)
}

// TestRedisOrderOneMatchesGeneralPath: lua/checkout.lua's order_one (the usual
// checkout: the whole cart, one live hold) leaves the same records, counters, indexes
// and answers as the general path it stands in for. One starting state (copied key by
// key to three prefixes) gets one batch of checkouts that mixes carts order_one takes
// (a sale hold, a product hold, with expired ids cleared elsewhere, of a sale ended
// since, of a product hidden since, of a user with holds in another stream too, a
// hold in the older record form, a user id with "|") with carts it must leave to the
// general path (a due hold, a swept hold, a due and a live hold, two live holds,
// hold_ids given, another user's hold id, a stale id, clear mode, a second checkout
// of the same cart, a replay, a key used with another body, items failing at runtime
// after their holds are gone): the script as built and the script without order_one,
// in one batch; and the script as built with each item in a batch of its own.
// Everything under the prefix must be the same, and so must each item's answer.
func TestRedisOrderOneMatchesGeneralPath(t *testing.T) {
	ctx := t.Context()
	fast := openTestRedis(t, itemTestRedisURL)
	general := openTestRedis(t, itemTestRedisURL)
	general.scripts["checkout"] = generalCheckoutScript(t)
	alone := openTestRedis(t, itemTestRedisURL)

	e := &env{st: fast, ctx: ctx, now: time.Now().UTC(), putIn: map[string]int{}}
	sid, sid2 := e.stream(t), e.stream(t)
	sale := e.sale(t, sid, 20, 3)
	ended := e.sale(t, sid, 5, 5)
	p := e.product(t, sid, 20)
	hiddenP := e.product(t, sid, 5)
	p2 := e.product(t, sid2, 5)
	at := e.now.Add(2 * time.Second)
	rpush := func(user, id string) {
		t.Helper()
		if err := fast.rdb.RPush(ctx, fast.base(sid)+"uh:"+user, id).Err(); err != nil {
			t.Fatal(err)
		}
	}

	e.mustHold(t, "one-sale", "", sale.ID, 2, time.Hour)
	e.mustHold(t, "one-product", p.ID, "", 3, time.Hour)
	e.mustHold(t, "one-other", p.ID, "", 1, time.Hour)
	e.mustHold(t, "one-ended", "", ended.ID, 2, time.Hour)
	e.mustHold(t, "one-hidden", hiddenP.ID, "", 2, time.Hour)
	e.mustHold(t, "two-streams", "", sale.ID, 1, time.Hour)
	e.mustHold(t, "two-streams", p2.ID, "", 1, time.Hour)
	e.mustHold(t, "one-due", "", sale.ID, 1, time.Second)
	swept := e.mustHold(t, "one-swept", "", sale.ID, 1, 500*time.Millisecond) // the first due
	e.mustHold(t, "due-live", "", sale.ID, 1, time.Second)
	e.mustHold(t, "due-live", p.ID, "", 2, time.Hour)
	e.mustHold(t, "two-live", "", sale.ID, 1, time.Hour)
	e.mustHold(t, "two-live", p.ID, "", 1, time.Hour)
	ids := e.mustHold(t, "ids", "", sale.ID, 1, time.Hour)
	e.mustHold(t, "ids-other", p.ID, "", 1, time.Hour)
	victim := e.mustHold(t, "victim", p.ID, "", 1, time.Hour)
	rpush("thief", victim.ID)
	rpush("stale", uuid.NewString())
	e.mustHold(t, "clear", "", sale.ID, 1, time.Second)
	e.mustHold(t, "clear", p.ID, "", 1, time.Hour)
	e.mustHold(t, "twice", p.ID, "", 1, time.Hour)
	e.mustHold(t, "replay", p.ID, "", 1, time.Hour)
	e.mustHold(t, "replay-done", p.ID, "", 1, time.Hour)
	if _, err := e.checkout("replay-done", "k", nil, e.now); err != nil {
		t.Fatalf("first checkout of replay-done: %v", err)
	}
	e.mustHold(t, "replay-done", p.ID, "", 1, time.Hour) // the cart changed since: the replay answers the first order
	e.mustHold(t, "key-conflict", p.ID, "", 1, time.Hour)
	if _, err := e.checkout("key-conflict", "k", []string{uuid.NewString()}, e.now); err == nil {
		t.Fatal("checkout of an unknown hold: want an error")
	}
	e.mustHold(t, "key-conflict-2", p.ID, "", 1, time.Hour)
	older := e.mustHold(t, "older", "", sale.ID, 1, time.Hour)
	toOlderCart(t, fast, sid, "older")
	toOlderForm(t, fast, sid, fast.base(sid)+"h:"+older.ID, func(m map[string]string) {
		expandHold(m)
		m["id"] = older.ID
	})
	e.mustHold(t, "u|1|2", p.ID, "", 1, time.Hour)
	e.mustHold(t, "fails", p.ID, "", 2, time.Hour)
	e.mustHold(t, "fails-general", p.ID, "", 1, time.Hour)
	e.mustHold(t, "fails-general", "", sale.ID, 1, time.Hour)

	// One hold released by the sweep (state expired), the others due but still live.
	if n, _, err := fast.ReleaseExpiredHolds(ctx, e.now.Add(600*time.Millisecond), 0); err != nil || n != 1 {
		t.Fatalf("ReleaseExpiredHolds: %d, %v; want 1 released", n, err)
	}
	if d := fast.rdb.HGet(ctx, fast.base(sid)+"uh:one-swept", swept.ID).Val(); !strings.HasPrefix(d, "-") {
		t.Fatalf("one-swept's hold: %q, want released (\"-\" and its record)", d)
	}
	if _, _, _, err := fast.StopSale(ctx, ended.ID, e.now); err != nil {
		t.Fatalf("StopSale: %v", err)
	}
	if _, _, _, err := fast.SetProductHidden(ctx, hiddenP.ID, true); err != nil {
		t.Fatalf("SetProductHidden: %v", err)
	}
	failOrder := uuid.NewString()
	failGeneralOrder := uuid.NewString()
	// (Their orders here have the older form, a list: the order's record is the key
	// o:<oid>, a string here, which the checkout finds after it took the holds.)
	for u, oid := range map[string]string{"fails": failOrder, "fails-general": failGeneralOrder} {
		if err := fast.rdb.Set(ctx, fast.base(sid)+"o:"+oid, "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := fast.rdb.RPush(ctx, fast.base(sid)+"uo:"+u, "an-older-order").Err(); err != nil {
			t.Fatal(err)
		}
	}
	fast.background.Wait()
	copyKeys(t, ctx, fast, general)
	copyKeys(t, ctx, fast, alone)
	before := keyDump(t, ctx, fast)
	if got := keyDump(t, ctx, general); !maps.Equal(before, got) {
		t.Fatal("the copied state differs from the original")
	}

	type item struct {
		user, key, mode, other string
		ids                    []string
		oid                    string
	}
	items := []item{
		{user: "one-sale"}, {user: "one-product"}, {user: "one-other", other: "x1,x2"},
		{user: "one-ended"}, {user: "one-hidden"}, {user: "two-streams"},
		{user: "one-due"}, {user: "one-swept"}, {user: "due-live"}, {user: "two-live"},
		{user: "ids", mode: "ids", ids: []string{ids.ID}},
		{user: "ids-other", mode: "ids", ids: []string{victim.ID}},
		{user: "thief"}, {user: "stale"}, {user: "nobody"},
		{user: "clear", mode: "clear"},
		{user: "twice", key: "k1"}, {user: "twice", key: "k2"},
		{user: "replay"}, {user: "replay"}, {user: "replay-done"},
		{user: "key-conflict"},
		{user: "key-conflict-2", key: "a"}, {user: "key-conflict-2", key: "a", mode: "ids", ids: []string{uuid.NewString()}},
		{user: "older"}, {user: "u|1|2"},
		{user: "fails", oid: failOrder},
		{user: "fails-general", oid: failGeneralOrder},
	}
	// one seq base for every batch (each batch's item i has seq base .. i: the alone
	// items' seqs differ from the batch's, see withoutSeq below)
	fast.fixedSeq, general.fixedSeq, alone.fixedSeq = e.now.UnixMicro(), e.now.UnixMicro(), e.now.UnixMicro()
	batch := func(list []item) []*checkoutItem {
		out := make([]*checkoutItem, len(list))
		for i, c := range list {
			key, mode, oid := cmp.Or(c.key, "k"), cmp.Or(c.mode, "all"), c.oid
			if oid == "" {
				oid = uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "%s/%s/%d", c.user, key, i)).String()
			}
			call := &checkoutCall{req: CheckoutRequest{OrderID: oid, UserID: c.user, HoldIDs: c.ids,
				IdempotencyKey: key, Fingerprint: fmt.Sprint(c.ids)}, ih: idemHash(c.user, key), now: at}
			args := call.args(mode, c.other, c.ids)
			out[i] = &checkoutItem{userID: c.user, index: true, args: args, done: make(chan struct{}, 1)}
		}
		return out
	}
	fastItems, generalItems, aloneItems := batch(items), batch(items), batch(items)
	fast.checkoutBatch(sid, fastItems)
	general.checkoutBatch(sid, generalItems)
	for _, it := range aloneItems {
		alone.checkoutBatch(sid, []*checkoutItem{it})
	}
	fast.background.Wait()
	general.background.Wait()
	alone.background.Wait()

	created := 0
	for i, c := range items {
		f, g, a := itemAnswer(fastItems[i], true), itemAnswer(generalItems[i], true), itemAnswer(aloneItems[i], false)
		if f != g {
			t.Errorf("item %d (%s): order_one answers\n %s\nthe general path\n %s", i, c.user, f, g)
		}
		if fa := itemAnswer(fastItems[i], false); fa != a {
			t.Errorf("item %d (%s): in the batch\n %s\nalone\n %s", i, c.user, fa, a)
		}
		if fastItems[i].r.Created {
			created++
		}
		if strings.HasPrefix(c.user, "fails") {
			wantItemFailed(t, c.user, fastItems[i].err)
		}
	}
	if created < 10 {
		t.Errorf("%d new orders, want at least 10 (the scenarios changed?)", created)
	}
	fd, gd, ad := keyDump(t, ctx, fast), keyDump(t, ctx, general), keyDump(t, ctx, alone)
	for _, k := range sortedKeys(fd, gd) {
		if fd[k] != gd[k] {
			t.Errorf("key %s: order_one leaves\n %s\nthe general path\n %s", k, fd[k], gd[k])
		}
	}
	for _, k := range sortedKeys(fd, ad) {
		if withoutSeq(fd[k]) != withoutSeq(ad[k]) {
			t.Errorf("key %s: one batch leaves\n %s\nbatches of one\n %s", k, fd[k], ad[k])
		}
	}
	e.checkInvariants(t)
}

func sortedKeys(a, b map[string]string) []string {
	var ks []string
	for k := range a {
		ks = append(ks, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}

// TestRedisOrderOneMatchesGeneralPathCheckout: the same through Store.Checkout, where
// the Go side picks the stream and the arguments (the cart index, the expired holds of
// other streams cleared first and listed, stream_id, hold_ids, the key's claim and
// its record, the order leaving the cart index, the global expiry set): order_one and
// the general path answer the same and leave the same keys (the orders' seq, the
// node's clock, aside).
func TestRedisOrderOneMatchesGeneralPathCheckout(t *testing.T) {
	ctx := t.Context()
	fast := openTestRedis(t, itemTestRedisURL)
	general := openTestRedis(t, itemTestRedisURL)
	general.scripts["checkout"] = generalCheckoutScript(t)
	e := &env{st: fast, ctx: ctx, now: time.Now().UTC(), putIn: map[string]int{}}
	sid, sid2 := e.stream(t), e.stream(t)
	sale := e.sale(t, sid, 20, 5)
	p := e.product(t, sid, 20)
	p2 := e.product(t, sid2, 20)
	e.mustHold(t, "a", "", sale.ID, 2, time.Hour) // and an expired hold in the other stream
	e.mustHold(t, "a", p2.ID, "", 1, time.Second)
	e.mustHold(t, "b", p.ID, "", 1, time.Hour)
	e.mustHold(t, "c", "", sale.ID, 1, time.Hour) // and a live hold in the other stream
	e.mustHold(t, "c", p2.ID, "", 1, time.Hour)
	d := e.mustHold(t, "d", "", sale.ID, 1, time.Hour)
	e.mustHold(t, "d", p2.ID, "", 1, time.Hour)
	e.mustHold(t, "e", "", sale.ID, 1, time.Hour)
	e.mustHold(t, "e", p2.ID, "", 1, time.Hour)
	e.mustHold(t, "f", p.ID, "", 1, time.Second)
	e.mustHold(t, "f", p2.ID, "", 1, time.Second)
	e.mustHold(t, "g", p.ID, "", 1, time.Hour)
	fast.background.Wait()
	copyKeys(t, ctx, fast, general)

	at := e.now.Add(2 * time.Second)
	type call struct {
		user, key, stream string
		ids               []string
		holdBefore        bool // a new hold of the user's (the same on both) first
	}
	calls := []call{
		{user: "a"}, {user: "b"}, {user: "c", stream: sid}, {user: "d", ids: []string{d.ID}},
		{user: "e"}, {user: "f"}, {user: "g"}, {user: "g", ids: []string{"x"}},
		{user: "b", holdBefore: true}, {user: "b", key: "k2"}, {user: "c", key: "k2"}, {user: "e", stream: sid2},
	}
	for i, c := range calls {
		if c.holdBefore {
			req := HoldRequest{ID: uuid.NewString(), UserID: c.user, ProductID: p.ID, Quantity: 1, ExpiresAt: at.Add(time.Hour)}
			for _, st := range []*RedisStore{fast, general} {
				if _, _, err := st.HoldUnits(ctx, req, at); err != nil {
					t.Fatalf("call %d: hold: %v", i, err)
				}
			}
		}
		req := CheckoutRequest{OrderID: uuid.NewString(), UserID: c.user, StreamID: c.stream, HoldIDs: c.ids,
			IdempotencyKey: cmp.Or(c.key, "k"), Fingerprint: fmt.Sprint(c.stream, c.ids)}
		var answers [2]string
		for j, st := range []*RedisStore{fast, general} {
			res, err := st.Checkout(ctx, req, at)
			st.background.Wait() // the key's record and the cart index, written after the answer
			b, _ := json.Marshal(res)
			answers[j] = fmt.Sprintf("%v %s", err, b)
			if i == 0 && (err != nil || len(res.Order.ExpiredHoldIDs) != 1) {
				t.Errorf("a's checkout: got %+v %v, want an order listing the expired hold of the other stream", res.Order, err)
			}
		}
		if answers[0] != answers[1] {
			t.Errorf("call %d (%s): order_one answers\n %s\nthe general path\n %s", i, c.user, answers[0], answers[1])
		}
	}
	for _, st := range []*RedisStore{fast, general} {
		if n, _, err := st.ReleaseExpiredHolds(ctx, at.Add(2*time.Hour), 0); err != nil || n != 2 {
			t.Errorf("ReleaseExpiredHolds: %d, %v; want 2 (d's hold in the other stream, e's here)", n, err)
		}
	}
	fd, gd := keyDump(t, ctx, fast), keyDump(t, ctx, general)
	for _, k := range sortedKeys(fd, gd) {
		if withoutSeq(fd[k]) != withoutSeq(gd[k]) {
			t.Errorf("key %s: order_one leaves\n %s\nthe general path\n %s", k, fd[k], gd[k])
		}
	}
	e.checkInvariants(t)
}

// withoutSeq blanks the seq of every order record in a keyDump value (the 4th of its
// packed fields, the node's clock when the order was placed).
func withoutSeq(v string) string {
	return pendingMark.ReplaceAllString(orderSeq.ReplaceAllString(v, "${1}seq"), "${1}token${2}until")
}

// pendingMark matches a key's pending mark's random token and until_ms (by the node's
// estimate of Redis's clock), which an order leaves (see settle).
var pendingMark = regexp.MustCompile(`("pending\|)[0-9a-f]+(:[0-9]+\|[^|"]*\|)[0-9]+`)

// orderSeq matches an order record's fields up to its seq (its 4th after the leading
// "|", after total_cents, currency, created_us), and the seq.
var orderSeq = regexp.MustCompile(`("\|[^|"]*\|[^|"]*\|[^|"]*\|)[0-9]+`)
