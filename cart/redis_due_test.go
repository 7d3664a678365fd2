package cart

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// TestHoldBatchMemberRoundTrip: a batch's sweep entry names each hold and its user,
// whatever the user id holds (spaces, colons, digits, nothing); entries not of the
// form are refused.
func TestHoldBatchMemberRoundTrip(t *testing.T) {
	ids := []string{"h1", "h2", "h3", "h4", "h5"}
	users := []string{"u", "a b", "3:x y", "", "é 12:"}
	m := holdBatchMember("s1", ids, users)
	sid, holds, ok := parseHoldBatch(m)
	want := []string{"h1 u", "h2 a b", "h3 3:x y", "h4 ", "h5 é 12:"}
	if !ok || sid != "s1" || !slices.Equal(holds, want) {
		t.Fatalf("parse %q: got %q %q %v, want s1 %q", m, sid, holds, ok, want)
	}
	for _, bad := range []string{"", "s1", "s1 ", "s1 h1", "s1 h1 1", "s1 h1 2:u", "s1 h1 1:ux", "s1 h1 1:u ", "s1 h1 -1:u", " h1 1:u", "s1 h1 x:u"} {
		if sid, holds, ok := parseHoldBatch(bad); ok {
			t.Errorf("parse %q: got %q %q, want refused", bad, sid, holds)
		}
	}
}

// holdBatchOf runs one hold batch of the requests (as concurrent HoldUnits calls of one
// stream share one) and fails t on an error.
func holdBatchOf(t *testing.T, st *RedisStore, sid string, now time.Time, reqs ...HoldRequest) []Hold {
	t.Helper()
	calls := make([]*holdCall, len(reqs))
	for i, r := range reqs {
		calls[i] = &holdCall{req: r, now: now, done: make(chan struct{}, 1)}
	}
	st.holdBatch(sid, calls)
	out := make([]Hold, len(calls))
	for i, c := range calls {
		if c.err != nil {
			t.Fatalf("hold %d of the batch: %v", i, c.err)
		}
		out[i] = c.hold
	}
	return out
}

// dueEntries reads a due set: member → score.
func dueEntries(t *testing.T, st *RedisStore, key string) map[string]float64 {
	t.Helper()
	zs, err := st.rdb.ZRangeWithScores(context.Background(), st.prefix+key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, z := range zs {
		out[z.Member.(string)] = z.Score
	}
	return out
}

// TestRedisHoldBatchOneDueEntry: a batch of holds is one sweep entry, due at its first
// expiry, written before the script (a refused hold in it too); a checkout leaves it;
// the sweep at that expiry releases the due hold, skips the ordered and the refused
// one, and gives the hold not due yet an entry of its own at its expiry, where the
// next sweep releases it. The invariants hold throughout.
func TestRedisHoldBatchOneDueEntry(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 2)
	p := e.product(t, sid, 5)
	req := func(user, pid, said string, qty int, ttl time.Duration) HoldRequest {
		return HoldRequest{ID: uuid.NewString(), UserID: user, ProductID: pid, SaleID: said, Quantity: qty, ExpiresAt: e.now.Add(ttl)}
	}
	reqs := []HoldRequest{
		req("a", "", sale.ID, 1, 2*time.Minute), // ordered below
		req("b b", "", sale.ID, 2, time.Minute), // due first
		req("c", p.ID, "", 3, 5*time.Minute),    // not due at the first sweep
		req("d", "", sale.ID, 3, time.Minute),   // refused: over the limit
	}
	calls := make([]*holdCall, len(reqs))
	for i, r := range reqs {
		calls[i] = &holdCall{req: r, now: e.now, done: make(chan struct{}, 1)}
	}
	st.holdBatch(sid, calls)
	for i, c := range calls[:3] {
		if c.err != nil {
			t.Fatalf("hold %d: %v", i, c.err)
		}
	}
	if calls[3].err == nil {
		t.Fatalf("hold over the limit: got %+v, want refused", calls[3].hold)
	}
	entries := dueEntries(t, st, holdBatchDueKey)
	member := holdBatchMember(sid, []string{reqs[0].ID, reqs[1].ID, reqs[2].ID, reqs[3].ID}, []string{"a", "b b", "c", "d"})
	if len(entries) != 1 || entries[member] != float64(e.now.Add(time.Minute).UnixMicro()) {
		t.Fatalf("sweep entries after the batch: got %v, want one: %q at the first expiry", entries, member)
	}
	if n := st.rdb.ZCard(e.ctx, st.prefix+holdDueKey).Val(); n != 0 {
		t.Fatalf("%s after the batch: %d entries, want none (one entry per batch)", holdDueKey, n)
	}
	if res, err := e.checkout("a", "k", nil, e.now); err != nil || !res.Created {
		t.Fatalf("checkout of a: got %+v %v, want an order", res, err)
	}
	if entries := dueEntries(t, st, holdBatchDueKey); len(entries) != 1 {
		t.Fatalf("sweep entries after the checkout: got %v, want the batch's still", entries)
	}
	e.checkInvariants(t)

	if n, _, err := st.ReleaseExpiredHolds(e.ctx, e.now.Add(30*time.Second), 10); err != nil || n != 0 {
		t.Fatalf("sweep before any expiry: got %d, %v; want 0", n, err)
	}
	n, _, err := st.ReleaseExpiredHolds(e.ctx, e.now.Add(time.Minute), 10)
	if err != nil || n != 1 {
		t.Fatalf("sweep at the first expiry: got %d released, %v; want 1 (b's)", n, err)
	}
	if s := e.getSale(t, sale.ID); s.Remaining != 9 || s.Held != 0 || s.Sold != 1 {
		t.Errorf("sale after the first sweep: remaining %d held %d sold %d, want 9, 0, 1", s.Remaining, s.Held, s.Sold)
	}
	later := holdBatchMember(sid, []string{reqs[2].ID}, []string{"c"})
	if entries := dueEntries(t, st, holdBatchDueKey); len(entries) != 1 || entries[later] != float64(e.now.Add(5*time.Minute).UnixMicro()) {
		t.Fatalf("sweep entries after the first sweep: got %v, want c's alone at its expiry", entries)
	}
	if got := e.getProduct(t, p.ID); got.Held != 3 {
		t.Errorf("product after the first sweep: held %d, want 3 (c's, not due)", got.Held)
	}
	e.checkInvariants(t)
	if n, _, err := st.ReleaseExpiredHolds(e.ctx, e.now.Add(5*time.Minute), 10); err != nil || n != 1 {
		t.Fatalf("sweep at c's expiry: got %d released, %v; want 1", n, err)
	}
	if got := e.getProduct(t, p.ID); got.Held != 0 || got.Stock != 5 {
		t.Errorf("product after the second sweep: stock %d held %d, want 5, 0", got.Stock, got.Held)
	}
	if entries := dueEntries(t, st, holdBatchDueKey); len(entries) != 0 {
		t.Errorf("sweep entries at the end: got %v, want none", entries)
	}
	e.checkInvariants(t)
}

// TestRedisHoldBatchSweepBudget: a sweep bounded below a batch's due holds releases
// that many and keeps the entry; the next releases the rest and drops it.
func TestRedisHoldBatchSweepBudget(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 5)
	var reqs []HoldRequest
	for i := range 3 {
		reqs = append(reqs, HoldRequest{ID: uuid.NewString(), UserID: fmt.Sprint("u", i), SaleID: sale.ID, Quantity: 1, ExpiresAt: e.now.Add(time.Minute)})
	}
	holdBatchOf(t, st, sid, e.now, reqs...)
	at := e.now.Add(time.Minute)
	for i, want := range []int{2, 1, 0} {
		n, _, err := st.ReleaseExpiredHolds(e.ctx, at, 2)
		if err != nil || n != want {
			t.Fatalf("sweep %d: got %d released, %v; want %d", i, n, err, want)
		}
	}
	if entries := dueEntries(t, st, holdBatchDueKey); len(entries) != 0 {
		t.Errorf("sweep entries at the end: got %v, want none", entries)
	}
	if s := e.getSale(t, sale.ID); s.Remaining != 10 || s.Held != 0 {
		t.Errorf("sale: remaining %d held %d, want 10, 0", s.Remaining, s.Held)
	}
	e.checkInvariants(t)
}

// TestRedisHoldBatchConcurrentSweeps: two nodes sweeping the same batches at once
// release each hold once, while checkouts race the expiry of the same holds (an order
// or returned units, never both: sold + remaining is the quantity, nothing held).
func TestRedisHoldBatchConcurrentSweeps(t *testing.T) {
	a := openTestRedis(t, testRedisURL)
	b, err := OpenRedis(context.Background(), testRedisURL, RedisOptions{Prefix: a.prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	e := &env{st: a, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	const n = 60
	sale := e.sale(t, sid, n, 1)
	for k := 0; k < n; k += 20 {
		var reqs []HoldRequest
		for i := k; i < k+20; i++ {
			reqs = append(reqs, HoldRequest{ID: uuid.NewString(), UserID: fmt.Sprint("u", i), SaleID: sale.ID, Quantity: 1, ExpiresAt: e.now.Add(time.Minute)})
		}
		holdBatchOf(t, a, sid, e.now, reqs...)
	}
	at := e.now.Add(time.Minute)
	var wg sync.WaitGroup
	var mu sync.Mutex
	released, ordered := 0, 0
	for _, st := range []*RedisStore{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				r, _, err := st.ReleaseExpiredHolds(e.ctx, at, 7)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				released += r
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// (due at at: a checkout a µs before it orders, one at it finds it expired)
			res, err := e.checkout(fmt.Sprint("u", i), "k", nil, at.Add(-time.Duration(i%2)*time.Microsecond))
			if err == nil && res.Created {
				mu.Lock()
				ordered++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for {
		r, _, err := a.ReleaseExpiredHolds(e.ctx, at, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if r == 0 {
			break
		}
		released += r
	}
	// (a checkout that found its hold due released it itself)
	s := e.getSale(t, sale.ID)
	if released+ordered > n || s.Sold != ordered || s.Held != 0 || s.Remaining != n-ordered {
		t.Errorf("got %d released by the sweeps and %d ordered of %d holds, sale %+v; want each hold ordered or returned, once", released, ordered, n, s)
	}
	if entries := dueEntries(t, a, holdBatchDueKey); len(entries) != 0 {
		t.Errorf("sweep entries at the end: %d, want none", len(entries))
	}
	e.checkInvariants(t)
}

// TestRedisOlderDueEntriesAfterUpgrade: holds whose entries are of the form written
// 2026-12-04 to 12-06 ("sid hid uid" in holddue:u, one per hold, dropped by the
// checkout) still work after the upgrade: one ordered by this version (which no longer
// drops it) is skipped by the sweep and its entry goes; one left is released; one
// removed is not released twice. A malformed entry of the batch set is dropped.
func TestRedisOlderDueEntriesAfterUpgrade(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	ctx := e.ctx
	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 5)
	var hs []Hold
	for _, u := range []string{"x", "y", "z"} {
		h := e.mustHold(t, u, "", sale.ID, 2, time.Minute)
		if st.rdb.ZRem(ctx, st.prefix+holdBatchDueKey, holdBatchMember(sid, []string{h.ID}, []string{u})).Val() != 1 {
			t.Fatalf("hold of %s: no batch entry to move", u)
		}
		st.rdb.ZAdd(ctx, st.prefix+holdDueKey, redis.Z{Score: float64(h.ExpiresAt.UnixMicro()), Member: holdDueMember(sid, h.ID, u)})
		hs = append(hs, h)
	}
	st.rdb.ZAdd(ctx, st.prefix+holdBatchDueKey, redis.Z{Score: 1, Member: "not an entry"})
	if res, err := e.checkout("x", "k", nil, e.now); err != nil || !res.Created {
		t.Fatalf("checkout of x: got %+v %v, want an order", res, err)
	}
	if _, err := st.RemoveHold(ctx, "z", hs[2].ID, e.now); err != nil {
		t.Fatal(err)
	}
	n, _, err := st.ReleaseExpiredHolds(ctx, e.now.Add(2*time.Minute), 10)
	if err != nil || n != 1 {
		t.Fatalf("sweep: got %d released, %v; want 1 (y's)", n, err)
	}
	for _, key := range []string{holdBatchDueKey, holdDueKey, olderHoldDueKey} {
		if c := st.rdb.ZCard(ctx, st.prefix+key).Val(); c != 0 {
			t.Errorf("%s after the sweep: %d entries, want 0", key, c)
		}
	}
	if s := e.getSale(t, sale.ID); s.Remaining != 8 || s.Held != 0 || s.Sold != 2 {
		t.Errorf("sale after the sweep: remaining %d held %d sold %d, want 8, 0, 2", s.Remaining, s.Held, s.Sold)
	}
	e.checkInvariants(t)
}

// TestRedisHoldBatchSweepInChunks: a stream's due entries naming more holds than one
// release call looks at (releaseArgs) are swept in several calls; the holds not due
// yet, in a later call's part, get their own entry and are released at their expiry.
func TestRedisHoldBatchSweepInChunks(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	const batches, per = 3, maxHoldBatch
	sale := e.sale(t, sid, batches*per, 1)
	for b := range batches {
		var reqs []HoldRequest
		for i := range per {
			ttl := time.Minute
			if b == batches-1 && i%2 == 1 {
				ttl = 5 * time.Minute // half of the last batch: due later
			}
			reqs = append(reqs, HoldRequest{ID: uuid.NewString(), UserID: fmt.Sprint("u", b, "-", i), SaleID: sale.ID, Quantity: 1, ExpiresAt: e.now.Add(ttl)})
		}
		holdBatchOf(t, st, sid, e.now, reqs...)
	}
	if batches*per <= releaseArgs {
		t.Fatalf("%d holds fit one release call (%d): the test needs more", batches*per, releaseArgs)
	}
	n, _, err := st.ReleaseExpiredHolds(e.ctx, e.now.Add(time.Minute), 10_000)
	if want := batches*per - per/2; err != nil || n != want {
		t.Fatalf("sweep at the first expiry: got %d released, %v; want %d", n, err, want)
	}
	entries := dueEntries(t, st, holdBatchDueKey)
	if len(entries) != 1 {
		t.Fatalf("sweep entries after the first sweep: got %d, want one (the later half of the last batch)", len(entries))
	}
	for m, at := range entries {
		_, holds, ok := parseHoldBatch(m)
		if !ok || len(holds) != per/2 || at != float64(e.now.Add(5*time.Minute).UnixMicro()) {
			t.Fatalf("the entry left: %d holds (%v) due at %v, want %d at the later expiry", len(holds), ok, at, per/2)
		}
	}
	if n, _, err := st.ReleaseExpiredHolds(e.ctx, e.now.Add(5*time.Minute), 10_000); err != nil || n != per/2 {
		t.Fatalf("sweep at the later expiry: got %d released, %v; want %d", n, err, per/2)
	}
	if s := e.getSale(t, sale.ID); s.Remaining != batches*per || s.Held != 0 {
		t.Errorf("sale at the end: remaining %d held %d, want %d, 0", s.Remaining, s.Held, batches*per)
	}
	if entries := dueEntries(t, st, holdBatchDueKey); len(entries) != 0 {
		t.Errorf("sweep entries at the end: %d, want none", len(entries))
	}
	e.checkInvariants(t)
}

// TestRedisHoldBatchAllOrdered: an entry whose holds were all ordered goes at the
// sweep, its carts gone (no script) or one of them there again with a later hold of
// its user (the script skips the ordered one); the later hold is released at its
// own expiry.
func TestRedisHoldBatchAllOrdered(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 5)
	for _, users := range [][]string{{"e", "f"}, {"g", "h"}} {
		var reqs []HoldRequest
		for _, u := range users {
			reqs = append(reqs, HoldRequest{ID: uuid.NewString(), UserID: u, SaleID: sale.ID, Quantity: 1, ExpiresAt: e.now.Add(time.Minute)})
		}
		holdBatchOf(t, st, sid, e.now, reqs...)
		for _, u := range users {
			if res, err := e.checkout(u, "k", nil, e.now); err != nil || !res.Created {
				t.Fatalf("checkout of %s: got %+v %v, want an order", u, res, err)
			}
		}
	}
	later := e.mustHold(t, "h", "", sale.ID, 1, 5*time.Minute) // h's cart is there again
	if n, _, err := st.ReleaseExpiredHolds(e.ctx, e.now.Add(time.Minute), 10); err != nil || n != 0 {
		t.Fatalf("sweep at the ordered holds' expiry: got %d released, %v; want 0", n, err)
	}
	entries := dueEntries(t, st, holdBatchDueKey)
	if len(entries) != 1 || entries[holdBatchMember(sid, []string{later.ID}, []string{"h"})] == 0 {
		t.Fatalf("sweep entries after the first sweep: got %v, want only h's later hold", entries)
	}
	if n, _, err := st.ReleaseExpiredHolds(e.ctx, e.now.Add(5*time.Minute), 10); err != nil || n != 1 {
		t.Fatalf("sweep at the later hold's expiry: got %d released, %v; want 1", n, err)
	}
	if s := e.getSale(t, sale.ID); s.Remaining != 6 || s.Held != 0 || s.Sold != 4 {
		t.Errorf("sale at the end: remaining %d held %d sold %d, want 6, 0, 4", s.Remaining, s.Held, s.Sold)
	}
	e.checkInvariants(t)
}
