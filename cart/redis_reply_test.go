package cart

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestRedisBatchRepliesOnce: in a batch, new holds answering what the last new hold
// answered (product, price, currency) come as one slot "=<k>" per run (four empty slots
// each once decoded), and placed orders answering the previous item's flags, touched
// records and order slots come as one slot "=<k>" per run (flags "=" and empty slots
// once decoded; lua/hold.lua, lua/checkout.lua, decodeFlat); the Go side answers
// every item as if each carried its own (holdBatch, checkoutBatch). Failed before:
// every item carried all its slots; then (until 2026-12-04) every item carried its
// full width of slots, empty ones included; then (until 2026-12-06) each short item
// was a slot of its own ("=", and a checkout's dropped hold ids).
func TestRedisBatchRepliesOnce(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 5)
	p := e.product(t, sid, 10)
	exp := e.now.Add(time.Hour)
	users := []string{"a", "b", "c", "d", "e"}
	var args []any
	for i, u := range users {
		said, pid := sale.ID, ""
		if i == 3 { // a product hold between sale holds: the next sale hold answers in full
			said, pid = "", p.ID
		}
		args = append(args, "1", pid, said, "1", uuid.NewString(), u, micros(exp), micros(e.now))
	}
	args = append([]any{"17650000000000"}, args...) // the seq base, then groups of one hold
	raw := func(name string, args []any, want int) {
		t.Helper()
		a, err := st.scripts[name].Run(e.ctx, st.rdb, []string{st.base(sid)}, args...).Slice()
		if err != nil || len(a) != want {
			t.Fatalf("%s: raw reply of %d slots %v, want %d", name, len(a), err, want)
		}
	}
	// The reply as it comes, for the same holds of a sale of their own (and their checkouts below).
	sale2 := e.sale(t, sid, 10, 5)
	var args2 []any
	for i, u := range users {
		said, pid := sale2.ID, ""
		if i == 3 {
			said, pid = "", p.ID
		}
		args2 = append(args2, "1", pid, said, "1", uuid.NewString(), u+"2", micros(exp), micros(e.now))
	}
	args2 = append([]any{"17650000000000"}, args2...)
	raw("hold", args2, 2+4+1+4+4) // (the two "=" in a row as one run "=2")
	r, err := st.runFlat(e.ctx, "hold", sid, holdWidth, args...)
	if err != nil {
		t.Fatal(err)
	}
	full := []string{"n", sale.ProductID, "500", "EUR"}
	want := [][]string{full, {"", "", "", ""}, {"", "", "", ""}, {"n", p.ID, "1000", "EUR"}, full}
	for i := range users {
		if got := r.item(i); !slices.Equal(got, want[i]) {
			t.Errorf("hold %d answered %q, want %q", i, got, want[i])
		}
	}

	cargs := []any{"17650000000000"} // the seq base
	for _, u := range users[:3] {
		cargs = append(cargs, "7", u, idemHash(u, "k"), "{}", uuid.NewString(), micros(e.now), "all", "")
	}
	cargs2 := []any{"17650000000000"}
	for _, u := range users[:3] {
		cargs2 = append(cargs2, "7", u+"2", idemHash(u+"2", "k"), "{}", uuid.NewString(), micros(e.now), "all", "")
	}
	raw("checkout", cargs2, 2+11+1) // (the two short items as one run "=2")
	r, err = st.runFlat(e.ctx, "checkout", sid, checkoutWidth, cargs...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		got := r.item(i)
		if got[0] != "" || got[2] == "" {
			t.Fatalf("checkout %d answered %q, want an order", i, got)
		}
		wantFlags, rest := "cse", []string{"", sale.ID, sale.ProductID + "," + sale.ID + ",1,500", "500", "EUR", ""}
		if i > 0 {
			wantFlags, rest = "=", []string{"", "", "", "", "", ""}
		}
		if got[2] != wantFlags || !slices.Equal(got[5:], rest) {
			t.Errorf("checkout %d answered %q, want flags %q and %q", i, got, wantFlags, rest)
		}
	}

	// Through the batches: every item's own answer.
	calls := make([]*holdCall, 3)
	for i := range calls {
		calls[i] = &holdCall{req: HoldRequest{ID: uuid.NewString(), UserID: fmt.Sprint("f", i), SaleID: sale.ID, Quantity: 1, ExpiresAt: exp}, now: e.now, done: make(chan struct{}, 1)}
	}
	st.holdBatch(sid, calls)
	items := make([]*checkoutItem, 3)
	for i, c := range calls {
		if c.err != nil || c.hold.ProductID != sale.ProductID || c.hold.UnitPriceCents != 500 || c.hold.Currency != "EUR" {
			t.Fatalf("hold %d: %+v %v", i, c.hold, c.err)
		}
		if len(c.ch.Sales) != 1 || c.ch.Sales[0].ID != sale.ID {
			t.Fatalf("hold %d: changes %+v", i, c.ch)
		}
		call := &checkoutCall{req: CheckoutRequest{OrderID: uuid.NewString(), UserID: c.req.UserID, IdempotencyKey: "k", Fingerprint: "{}"},
			ih: idemHash(c.req.UserID, "k"), now: e.now}
		items[i] = &checkoutItem{userID: c.req.UserID, index: true, args: call.args("all", "", nil), done: make(chan struct{}, 1)}
	}
	st.checkoutBatch(sid, items)
	st.background.Wait()
	for i, it := range items {
		o := it.r.orderOf()
		if it.err != nil || !it.r.Created || o.UserID != calls[i].req.UserID || o.TotalCents != 500 || o.Currency != "EUR" ||
			len(o.Items) != 1 || o.Items[0] != (OrderItem{ProductID: sale.ProductID, SaleID: sale.ID, Quantity: 1, UnitPriceCents: 500}) {
			t.Errorf("checkout %d: %+v %v", i, o, it.err)
		}
		// (to the µs, as the order's record keeps it)
		if want := time.UnixMicro(e.now.UnixMicro()).UTC(); o.CreatedAt != want {
			t.Errorf("checkout %d: created %v, want %v", i, o.CreatedAt, want)
		}
		ch := changesOf(&it.r)
		if len(ch.Sales) != 1 || ch.Sales[0].ID != sale.ID || !it.r.Swept || !it.r.Empty {
			t.Errorf("checkout %d: changes %+v, swept %v, empty %v", i, ch, it.r.Swept, it.r.Empty)
		}
		stored, err := st.getOrder(e.ctx, o.UserID, sid, o.ID)
		if err != nil || fmt.Sprint(stored) != fmt.Sprint(o) {
			t.Errorf("checkout %d: answered %+v, stored %+v (%v)", i, o, stored, err)
		}
	}
}

// TestRedisHoldIDTaken: a hold whose id is recorded answers the stored hold to its
// user (a retry), whatever the stock says, and leaves the counters as they were
// (lua/hold.lua writes a hold by HSETNX instead of an EXISTS per hold, and counts the
// user's units back when the id is taken). A hold of the older form (its user's cart
// a list, the hold its own key) answers conflict to anyone else; one of the newer
// form is looked for in its user's cart only (hold ids are new UUIDs): another user's
// hold with its id is that user's own.
func TestRedisHoldIDTaken(t *testing.T) {
	for _, older := range []bool{false, true} {
		t.Run(fmt.Sprint("older=", older), func(t *testing.T) { testHoldIDTaken(t, older) })
	}
}

func testHoldIDTaken(t *testing.T, older bool) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, 3, 3)
	exp := e.now.Add(time.Hour)
	hid := uuid.NewString()
	hold := func(user string, qty int) []string {
		t.Helper()
		r, err := st.runFlat(e.ctx, "hold", sid, holdWidth, "17650000000000", "1", "", sale.ID, fmt.Sprint(qty), hid, user, micros(exp), micros(e.now))
		if err != nil {
			t.Fatal(err)
		}
		return r.item(0)
	}
	if got := hold("a", 1); got[0] != "n" {
		t.Fatalf("first hold answered %q", got)
	}
	if older { // (and b's cart of that form too: a list)
		toOlderCart(t, st, sid, "a")
		if err := st.rdb.RPush(e.ctx, st.base(sid)+"uh:b", "an-older-hold").Err(); err != nil {
			t.Fatal(err)
		}
	}
	counts := func() string {
		s, err := st.GetSale(e.ctx, sale.ID)
		if err != nil {
			t.Fatal(err)
		}
		used, _ := st.rdb.HGetAll(e.ctx, st.base(sid)+"su:"+sale.ID).Result()
		return fmt.Sprint(s.Remaining, s.Held, s.Sold, used)
	}
	before := counts()
	cases := []struct {
		user string
		qty  int
		want string
	}{{"a", 1, "r"}, {"a", 2, "r"}, {"a", 5, "r"}}
	if older {
		cases = append(cases, struct {
			user string
			qty  int
			want string
		}{"b", 1, "e"}, struct {
			user string
			qty  int
			want string
		}{"b", 5, "e"})
	}
	for _, c := range cases {
		got := hold(c.user, c.qty)
		if got[0] != c.want || (c.want == "e" && got[1] != "conflict") {
			t.Errorf("hold of %s (%d) with a taken id answered %q, want %s", c.user, c.qty, got, c.want)
		}
		if c.want == "r" {
			m, err := unpackHash(got[1])
			if err != nil || m["user_id"] != "a" || m["quantity"] != "1" {
				t.Errorf("retry of %s answered the record %v (%v)", c.user, m, err)
			}
		}
		if now := counts(); now != before {
			t.Errorf("hold of %s (%d) with a taken id: counters %s, were %s", c.user, c.qty, now, before)
		}
	}
	if !older {
		if got := hold("b", 1); got[0] != "n" {
			t.Errorf("b's hold with a's hold's id answered %q, want a new hold of b's", got)
		}
		if got := hold("b", 1); got[0] != "r" {
			t.Errorf("b's hold again answered %q, want b's hold (a retry)", got)
		}
		for _, u := range []string{"a", "b"} {
			m, err := st.rdb.HGetAll(e.ctx, st.base(sid)+"uh:"+u).Result()
			cs, cerr := st.carts(e.ctx, u, "", []string{sid}, e.now)
			var h Hold
			if cerr == nil && len(cs) == 1 && len(cs[0].holds) == 1 {
				h = holdFromHash(cs[0].holds[0], e.now)
			}
			if err != nil || len(m) != 1 || m[hid] == "" || cerr != nil || h.ID != hid || h.UserID != u || h.Quantity != 1 {
				t.Errorf("%s's cart: %v %v, hold %+v %v, want its own hold %s", u, m, err, h, cerr, hid)
			}
		}
	}
	e.checkInvariants(t)
}

// TestRedisIdemHashUnchanged: idemHash, made in stack buffers, names a user's key as
// the formula it replaced did (keys stored by earlier versions are found), with one
// allocation for the usual ids and keys.
func TestRedisIdemHashUnchanged(t *testing.T) {
	old := func(userID, key string) string {
		h := sha256.Sum256([]byte(userID + "\x00" + key))
		return hex.EncodeToString(h[:])
	}
	long := strings.Repeat("x", 300)
	for _, c := range [][2]string{{"", ""}, {"u", "k"}, {"buyer-1", "loadgen-1-2"}, {"a\x00b", "c"}, {long, "k"}, {"u", long}, {long, long}} {
		if got, want := idemHash(c[0], c[1]), old(c[0], c[1]); got != want {
			t.Errorf("idemHash(%q, %q) = %s, want %s", c[0], c[1], got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = idemHash("buyer-123", "loadgen-1764682345-17") }); n != 1 {
		t.Errorf("idemHash: %v allocations, want 1", n)
	}
}

// TestDecodeFlatShortItems: a run of short items ("=<k>") is expanded to k items at
// full width, and a reply cut inside an item or with a bad count is an error, not a
// shorter item.
func TestDecodeFlatShortItems(t *testing.T) {
	none := []any{}
	r, err := decodeFlat("checkout", []any{none, none, "", "", "cse", "h1", "", "p", "s", "it", "5", "EUR", "", "=2",
		"", "", "cse", "h4", "", "p", "s", "it", "5", "EUR", "", "=1"}, checkoutWidth)
	if err != nil || len(r.slots) != 5*checkoutWidth {
		t.Fatalf("checkout: got %d slots %v, want 5 items", len(r.slots), err)
	}
	for _, i := range []int{1, 2, 4} {
		if got, want := r.item(i), []string{"", "", "=", "", "", "", "", "", "", "", ""}; !slices.Equal(got, want) {
			t.Errorf("checkout's short item %d: got %q, want %q", i, got, want)
		}
	}
	if got := r.item(3); got[3] != "h4" {
		t.Errorf("checkout's item 3 after a run: got %q, want h4's", got)
	}
	r, err = decodeFlat("hold", []any{none, none, "n", "p", "5", "EUR", "=2", "e", "conflict", "m", "", "=1"}, holdWidth)
	if err != nil || len(r.slots) != 5*holdWidth || !slices.Equal(r.item(2), []string{"", "", "", ""}) ||
		!slices.Equal(r.item(4), []string{"", "", "", ""}) || r.item(3)[1] != "conflict" {
		t.Fatalf("hold: got %q %v, want 5 items, the 2nd, 3rd and 5th empty", r.slots, err)
	}
	for _, bad := range []struct {
		name  string
		slots []any
		width int
	}{
		{"checkout", []any{none, none, "", "", "cse"}, checkoutWidth},
		{"checkout", []any{none, none, "="}, checkoutWidth},
		{"checkout", []any{none, none, "=0"}, checkoutWidth},
		{"checkout", []any{none, none, "=x"}, checkoutWidth},
		{"hold", []any{none, none, "=-1"}, holdWidth},
		{"hold", []any{none, none, "=1", "n", "p"}, holdWidth},
	} {
		if _, err := decodeFlat(bad.name, bad.slots, bad.width); err == nil {
			t.Errorf("%s %q: no error, want one (an item cut short or a bad run)", bad.name, bad.slots)
		}
	}
}

// TestRedisCheckoutShortForm: the usual checkout (mode "all", fingerprint "", no
// expired holds cleared elsewhere, no hold ids) goes to the checkout script as 4
// arguments (in a run, "-k" before them), any other as its count, 7 and its hold ids
// (checkoutCall.args); in one batch, an
// item of each form with the same values answers the same and places the same order.
func TestRedisCheckoutShortForm(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC(), putIn: map[string]int{}}
	call := func(u, fp string) *checkoutCall {
		return &checkoutCall{req: CheckoutRequest{OrderID: uuid.NewString(), UserID: u, IdempotencyKey: "k", Fingerprint: fp},
			ih: idemHash(u, "k"), now: e.now}
	}
	for _, c := range []struct {
		fp, mode, other string
		ids             []string
		want            int
	}{
		{"", "all", "", nil, 4},
		{"x", "all", "", nil, 7},
		{"", "all", "h1", nil, 7},
		{"", "ids", "", []string{"h1", "h2"}, 9},
		{"", "clear", "", nil, 7},
		{"", "clear", "", []string{"h1"}, 8},
	} {
		a := call("a", c.fp).args(c.mode, c.other, c.ids)
		if got := len(a.appendTo(nil)); a.n != c.want || got != c.want {
			t.Errorf("args of fingerprint %q mode %q other %q ids %q: n %d, %d arguments; want %d", c.fp, c.mode, c.other, c.ids, a.n, got, c.want)
		}
	}

	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 5)
	users := []string{"short", "long"}
	for _, u := range users {
		e.mustHold(t, u, "", sale.ID, 2, time.Hour)
	}
	short, long := call("short", ""), call("long", "")
	short.args("all", "", nil) // (its kf)
	long.args("all", "", nil)
	now := micros(e.now)
	r, err := st.runFlat(e.ctx, "checkout", sid, checkoutWidth,
		"17650000000000", "-1", "short", short.kf, short.req.OrderID, now,
		"7", "long", long.kf, "", long.req.OrderID, now, "all", "")
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []*checkoutCall{short, long} {
		got := r.item(i)
		if got[0] != "" || got[2] == "" {
			t.Fatalf("checkout %d answered %q, want an order", i, got)
		}
		o, err := st.getOrder(e.ctx, c.req.UserID, sid, c.req.OrderID)
		want := OrderItem{ProductID: sale.ProductID, SaleID: sale.ID, Quantity: 2, UnitPriceCents: 500}
		if err != nil || o.TotalCents != 1000 || len(o.Items) != 1 || o.Items[0] != want {
			t.Errorf("order of %s: %+v %v", c.req.UserID, o, err)
		}
	}
	if got := r.item(1); got[2] != "=" { // the same flags, records and order slots as the first
		t.Errorf("the long form's answer %q, want the short form's (flags \"=\")", got)
	}
	e.checkInvariants(t)
}

// TestRedisHoldGroupsAndSeqs: holdBatch sends the holds of one target and quantity in a
// row as one group (the target and quantity once, lua/hold.lua) and each hold's seq is
// the batch's seq base and its place: a batch of holds of two sales, a product and
// quantities changing between neighbours answers each hold its own, in the batch's
// order by (created_us, seq) as ListHolds sorts them, the counters in step; a refused
// hold (over the limit) in the middle of a group refuses that hold only; the next
// batch's seqs come after.
func TestRedisHoldGroupsAndSeqs(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: t.Context(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	a, b := e.sale(t, sid, 20, 3), e.sale(t, sid, 20, 3)
	p := e.product(t, sid, 20)
	exp := e.now.Add(time.Hour)
	type h struct {
		user, pid, said string
		qty             int
		err             error
	}
	batch := func(hs []h) []*holdCall {
		calls := make([]*holdCall, len(hs))
		for i, x := range hs {
			calls[i] = &holdCall{req: HoldRequest{ID: uuid.NewString(), UserID: x.user, ProductID: x.pid, SaleID: x.said, Quantity: x.qty, ExpiresAt: exp},
				now: e.now, done: make(chan struct{}, 1)}
		}
		st.holdBatch(sid, calls)
		for i, c := range calls {
			if !errors.Is(c.err, hs[i].err) || (c.err == nil && (c.hold.ID != c.req.ID || c.hold.Quantity != hs[i].qty || c.hold.SaleID != hs[i].said)) {
				t.Errorf("hold %d %+v: %+v %v, want error %v", i, hs[i], c.hold, c.err, hs[i].err)
			}
		}
		return calls
	}
	first := batch([]h{
		{user: "u", said: a.ID, qty: 1}, {user: "v", said: a.ID, qty: 1}, {user: "u", said: a.ID, qty: 2},
		{user: "u", said: a.ID, qty: 1, err: ErrLimitExceeded}, {user: "w", said: a.ID, qty: 1},
		{user: "u", pid: p.ID, qty: 1}, {user: "u", said: b.ID, qty: 2}, {user: "u", said: a.ID, qty: 3, err: ErrLimitExceeded},
		{user: "v", said: b.ID, qty: 3}, {user: "u", said: b.ID, qty: 1},
	})
	second := batch([]h{{user: "u", pid: p.ID, qty: 2}})
	want := []string{}
	for _, c := range append(first, second...) {
		if c.err == nil && c.req.UserID == "u" {
			want = append(want, fmt.Sprint(c.req.ID, " ", cmp.Or(c.req.SaleID, c.req.ProductID), " ", c.req.Quantity))
		}
	}
	hs, err := st.ListHolds(e.ctx, "u", e.now)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range hs {
		got = append(got, fmt.Sprint(x.ID, " ", cmp.Or(x.SaleID, x.ProductID), " ", x.Quantity))
	}
	if !slices.Equal(got, want) {
		t.Errorf("u's holds in the order %q, want the batches' %q", got, want)
	}
	if n := len(want); n != 6 {
		t.Errorf("%d holds of u, want 6", n)
	}
	e.checkInvariants(t)
}

// TestFlatReplySharesRecords: a batch's sale and product records are decoded once and
// each handed out as a slice of one that the items naming only it share (one heap
// copy of the record per batch, not per hold or checkout), its capacity one so that an
// append copies it; an item naming several gets a sorted slice of its own, and an id
// the reply has no record of a zero record (as before).
func TestFlatReplySharesRecords(t *testing.T) {
	rec := func(kv ...string) []any {
		out := make([]any, len(kv))
		for i, s := range kv {
			out[i] = s
		}
		return out
	}
	sales := []any{rec("id", "s2", "remaining", "7"), rec("id", "s1", "remaining", "3")}
	products := []any{rec("id", "p1", "stock", "4")}
	r, err := decodeFlat("hold", []any{sales, products, "n", "p1", "5", "EUR", "=1", "n", "p1", "5", "EUR"}, holdWidth)
	if err != nil {
		t.Fatal(err)
	}
	req := HoldRequest{ID: "h", UserID: "u", ProductID: "p1", SaleID: "s1", Quantity: 1, ExpiresAt: time.Now().Add(time.Minute)}
	_, a, err1 := holdResult(r, 0, nil, "st", req, time.Now())
	_, b, err2 := holdResult(r, 2, nil, "st", req, time.Now())
	if err1 != nil || err2 != nil || len(a.Sales) != 1 || a.Sales[0].Remaining != 3 || a.Products != nil {
		t.Fatalf("hold changes %+v %v %v, want sale s1 with 3 remaining", a, err1, err2)
	}
	if &a.Sales[0] != &b.Sales[0] || cap(a.Sales) != 1 {
		t.Errorf("two holds of one sale in a batch: records at %p and %p (capacity %d), want one shared, capacity 1", &a.Sales[0], &b.Sales[0], cap(a.Sales))
	}
	if grown := append(a.Sales, Sale{ID: "x"}); &grown[0] == &a.Sales[0] || b.Sales[0].ID != "s1" {
		t.Errorf("an append to a shared slice wrote into the batch's record")
	}
	req.SaleID = ""
	if _, c, err := holdResult(r, 0, nil, "st", req, time.Now()); err != nil || len(c.Products) != 1 || c.Products[0].Stock != 4 || c.Sales != nil {
		t.Errorf("product hold changes %+v %v, want product p1 with stock 4", c, err)
	}

	if got := changed(r.sale, "s1"); len(got) != 1 || &got[0] != &a.Sales[0] {
		t.Errorf("changed(s1) = %+v, want the batch's record", got)
	}
	got := changed(r.sale, "s2,s1,gone")
	if len(got) != 3 || got[0].ID != "s2" || got[1].ID != "s1" || got[2] != (Sale{}) || &got[1] == &a.Sales[0] {
		t.Errorf("changed(s2,s1,gone) = %+v, want copies of s2 and s1 and a zero record", got)
	}
	ch := Changes{Sales: got}
	sortChanges(&ch)
	if ch.Sales[0].ID != "" || ch.Sales[1].ID != "s1" || r.sale["s1"][0].ID != "s1" || r.sale["s2"][0].ID != "s2" {
		t.Errorf("sorting a checkout's own changes: %+v; the batch's records s1 %+v, s2 %+v", ch.Sales, r.sale["s1"], r.sale["s2"])
	}
	if changed(r.sale, "") != nil || len(changed(r.product, "gone")) != 1 {
		t.Errorf("changed of no id, or of one id with no record: want nil and one zero record")
	}
}
