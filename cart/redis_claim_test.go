package cart

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRedisStoreScriptClaims runs the shared suite with every claim by claim.lua;
// TestRedisStore runs it with the plain claims.
func TestRedisStoreScriptClaims(t *testing.T) {
	runStoreSuite(t, func(t *testing.T) Store {
		st := openTestRedis(t, testRedisURL)
		st.plainClaims.Store(false)
		return st
	})
}

// TestRedisPlainClaimMark: a new key is claimed without a script: its pending mark
// is claim.lua's form with until by Redis's clock (never earlier than claim.lua's own
// would be, and within a second of it), it lives 24 h, and the order index is left to
// the checkout (which lists the stream before the order; claim.lua lists it itself).
func TestRedisPlainClaimMark(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	if !st.plainClaims.Load() {
		t.Fatal("plain claims are off")
	}
	sale := e.sale(t, e.stream(t), 5, 5)
	e.mustHold(t, "u", "", sale.ID, 1, time.Hour)
	ih := idemHash("u", "k")
	before, err := st.rdb.Time(e.ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	_, cart, _, err := st.claimIdem(e.ctx, "u", ih, "fp", "", e.now, nil)
	if err != nil || len(cart.sids) != 1 || cart.sids[0] != sale.StreamID || cart.indexed != "" {
		t.Fatalf("claim: got %+v %v, want the sale's stream, not yet indexed", cart, err)
	}
	after, err := st.rdb.Time(e.ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	k := st.userBase("u") + "idem:" + ih
	v, err := st.rdb.Get(e.ctx, k).Result()
	f := strings.Split(v, "|")
	if err != nil || len(f) != 4 || f[0] != "pending" || f[2] != "fp" || f[1] != tokenAt(f[1][:min(24, len(f[1]))], e.now) {
		t.Fatalf("mark: got %q %v, want pending|<24 hex digits>:%d|fp|until", v, err, e.now.UnixMicro())
	}
	until, _ := strconv.ParseInt(f[3], 10, 64)
	lo, hi := before.UnixMilli()+idemPendingTTL.Milliseconds(), after.UnixMilli()+idemPendingTTL.Milliseconds()+1000
	if until < lo || until > hi {
		t.Errorf("mark's until %d: want within [%d, %d] (Redis's clock at the claim + %v, never earlier)", until, lo, hi, idemPendingTTL)
	}
	if ttl, err := st.rdb.PTTL(e.ctx, k).Result(); err != nil || ttl < IdempotencyTTL-time.Minute || ttl > IdempotencyTTL {
		t.Errorf("mark's TTL: got %v %v, want 24 h", ttl, err)
	}
	if n, err := st.rdb.SCard(e.ctx, st.userBase("u")+"orders").Result(); err != nil || n != 0 {
		t.Errorf("order index after the plain claim: %d members %v, want none (the checkout lists it)", n, err)
	}
	c := &checkoutCall{req: CheckoutRequest{OrderID: "o1", UserID: "u", IdempotencyKey: "k", Fingerprint: "fp"}, ih: ih, now: e.now, indexed: cart.indexed}
	if res, err := st.checkout(e.ctx, c, cart); err != nil || !res.Created {
		t.Fatalf("checkout: %+v %v", res, err)
	}
	if ok, err := st.rdb.SIsMember(e.ctx, st.userBase("u")+"orders", sale.StreamID).Result(); err != nil || !ok {
		t.Errorf("order index after the checkout: %v %v, want the stream listed", ok, err)
	}
	if os, err := st.ListOrders(e.ctx, "u"); err != nil || len(os) != 1 || os[0].ID != "o1" {
		t.Errorf("ListOrders: got %+v %v, want o1", os, err)
	}
}

// TestRedisPlainClaimKeyInUse: a key a plain claim holds is judged by claim.lua for
// the next call: the same body waits and conflicts (in progress), another body
// conflicts, a mark past its time is taken over ("reclaimed"), and a done mark
// answers its order (same body) or conflicts (another).
func TestRedisPlainClaimKeyInUse(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	sale := e.sale(t, e.stream(t), 5, 5)
	e.mustHold(t, "u", "", sale.ID, 1, time.Hour)
	ih := idemHash("u", "k")
	tok, _, _, err := st.claimIdem(e.ctx, "u", ih, "fp", "", e.now, nil)
	if err != nil || tok == "" {
		t.Fatalf("first claim: %q %v", tok, err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
	defer cancel()
	if _, _, _, err := st.claimIdem(ctx, "u", ih, "fp", "", e.now, nil); !errors.Is(err, ErrConflict) {
		t.Errorf("same key and body while pending: got %v, want conflict (in progress)", err)
	}
	if _, _, _, err := st.claimIdem(e.ctx, "u", ih, "other", "", e.now, nil); !errors.Is(err, ErrConflict) {
		t.Errorf("same key, other body while pending: got %v, want conflict", err)
	}
	expirePending(t, st, "u", ih)
	tok2, cart, _, err := st.claimIdem(e.ctx, "u", ih, "fp", "", e.now, nil)
	if err != nil || tok2 == tok || cart == nil || !cart.reclaimed {
		t.Fatalf("claim after the mark's time: got %q %+v %v, want reclaimed", tok2, cart, err)
	}
	res, err := st.Checkout(e.ctx, CheckoutRequest{OrderID: "o2", UserID: "u", IdempotencyKey: "k2", Fingerprint: "fp"}, e.now)
	if err != nil || !res.Created {
		t.Fatalf("checkout with k2: %+v %v", res, err)
	}
	st.background.Wait() // the done mark
	again, err := st.Checkout(e.ctx, CheckoutRequest{OrderID: "o3", UserID: "u", IdempotencyKey: "k2", Fingerprint: "fp"}, e.now)
	if err != nil || again.Created || again.Order.ID != "o2" {
		t.Errorf("k2 again, same body: got %+v %v, want o2", again.Order, err)
	}
	if _, err := st.Checkout(e.ctx, CheckoutRequest{OrderID: "o4", UserID: "u", IdempotencyKey: "k2", Fingerprint: "x"}, e.now); !errors.Is(err, ErrConflict) {
		t.Errorf("k2 again, another body: got %v, want conflict", err)
	}
}

// TestRedisPlainClaimPrunesEmptiedStreams (the cart index's earlier form, which
// nodes before 2026-12-06 wrote): a plain claim leaves the streams an order
// emptied (and their "~" records) in the user's cart index, out of its cart, until
// pruneDeadAfter of them are there; then forget.lua forgets them, but not a stream
// where a hold came after the claim read the index (it races the prune), and claim.lua
// reads an index the plain claims left as they do.
func TestRedisPlainClaimPrunesEmptiedStreams(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	st.streamKeyedIndex = true // the earlier form of the index (nodes before 2026-12-06)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	gen := st.userBase("u") + "gen"
	var sales []Sale
	for i := 0; i <= pruneDeadAfter+1; i++ {
		sales = append(sales, e.sale(t, e.stream(t), 5, 5))
	}
	buy := func(i int) {
		t.Helper()
		e.mustHold(t, "u", "", sales[i].ID, 1, time.Hour)
		res, err := e.checkout("u", fmt.Sprint("k", i), nil, e.now)
		if err != nil || !res.Created || res.Order.StreamID != sales[i].StreamID {
			t.Fatalf("checkout %d: %+v %v", i, res.Order, err)
		}
		st.background.Wait()
	}
	for i := 0; i < pruneDeadAfter; i++ {
		buy(i)
	}
	// pruneDeadAfter-1 emptied streams were read by the last claims: still there.
	m, err := st.rdb.HGetAll(e.ctx, gen).Result()
	if err != nil || len(m) != 2*pruneDeadAfter {
		t.Fatalf("index after %d orders: got %v %v, want %d streams and their records", pruneDeadAfter, m, err, pruneDeadAfter)
	}
	if sids, _, err := st.cartStreams(e.ctx, "u"); err != nil || len(sids) != 0 {
		t.Fatalf("cart streams: got %v %v, want none", sids, err)
	}
	// claim.lua reads the same cart from it (and would forget them): check by a
	// copy under another user, so this user's index stays for the plain claims.
	for f, v := range m {
		st.rdb.HSet(e.ctx, st.userBase("w")+"gen", f, v)
	}
	st.plainClaims.Store(false)
	_, wc, _, err := st.claimIdem(e.ctx, "w", idemHash("w", "k"), "f", "", e.now, nil)
	st.plainClaims.Store(true)
	if err != nil || len(wc.sids) != 0 {
		t.Fatalf("claim.lua on the plain claims' index: got %+v %v, want an empty cart", wc, err)
	}
	if n, _ := st.rdb.HLen(e.ctx, st.userBase("w")+"gen").Result(); n != 0 {
		t.Errorf("claim.lua left %d fields, want none", n)
	}

	// The next claim reads pruneDeadAfter emptied streams and prunes them, but the
	// first one gets a hold between the claim's read and the prune (held back here).
	e.mustHold(t, "u", "", sales[pruneDeadAfter].ID, 1, time.Hour)
	cart, dead := cartFromIndex(mustGens(t, st, gen))
	if len(cart.sids) != 1 || cart.sids[0] != sales[pruneDeadAfter].StreamID || len(dead) != 2*pruneDeadAfter {
		t.Fatalf("cart from the index: %+v, dead %v", cart, dead)
	}
	raced := e.mustHold(t, "u", "", sales[0].ID, 1, time.Hour)
	st.pruneDead(st.userBase("u"), dead)
	st.background.Wait()
	for tries := 0; ; tries++ { // the prune is queued, nobody waits for it
		m, _ = st.rdb.HGetAll(e.ctx, gen).Result()
		if len(m) <= 3 || tries == 200 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok := m[sales[0].StreamID]; !ok || len(m) != 3 {
		t.Errorf("index after the prune: got %v, want the raced stream %s (and its old record) and the new one", m, sales[0].StreamID)
	}
	for i := 1; i < pruneDeadAfter; i++ {
		if _, ok := m["~"+sales[i].StreamID]; ok {
			t.Errorf("stream %d's record left after the prune", i)
		}
	}
	hs, err := st.ListHolds(e.ctx, "u", e.now)
	if err != nil || len(hs) != 2 {
		t.Fatalf("holds: got %+v %v, want 2 (the raced one %s too)", hs, err, raced.ID)
	}
	// Through the whole path: the claim of a checkout with two streams in the cart.
	res, err := st.Checkout(e.ctx, CheckoutRequest{OrderID: "o", UserID: "u", IdempotencyKey: "kk", Fingerprint: "f"}, e.now)
	if !errors.Is(err, ErrConflict) {
		t.Errorf("checkout of a cart of two streams: got %+v %v, want conflict (name one)", res.Order, err)
	}
	e.checkInvariants(t)
}

func mustGens(t *testing.T, st *RedisStore, key string) map[string]string {
	t.Helper()
	m, err := st.rdb.HGetAll(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRedisClockEstimateNeverEarly: the node's estimate of Redis's clock (for the
// plain claims' marks) is never before Redis's own clock read before it, nor far
// after the one read after it, and stale samples are not used.
func TestRedisClockEstimateNeverEarly(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		before, err := st.rdb.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		est, ok := st.clock.nowMS()
		after, err := st.rdb.Time(ctx).Result()
		if err != nil || !ok {
			t.Fatalf("estimate %v, TIME %v", ok, err)
		}
		if est < before.UnixMilli() {
			t.Fatalf("estimate %d ms before Redis's clock read before it", before.UnixMilli()-est)
		}
		if est > after.UnixMilli()+1000 {
			t.Fatalf("estimate %d ms after Redis's clock read after it", est-after.UnixMilli())
		}
		time.Sleep(2 * time.Millisecond)
	}
	var c redisClock
	c.took(time.Now(), time.Now().Add(-maxClockAge-time.Second), nil)
	if _, ok := c.nowMS(); ok {
		t.Error("a sample older than maxClockAge was used")
	}
	// The node's machine suspended for 2 minutes after the sample: its monotonic clock
	// did not move, its wall clock and Redis's did.
	sent := time.Now()
	redisNow := sent.UnixMicro()
	c.sample.Store(&clockSample{redisUS: redisNow, sent: sent, sentWall: sent.Add(-2 * time.Minute).UnixNano()})
	if est, ok := c.nowMS(); !ok || est < redisNow/1000+(2*time.Minute).Milliseconds() {
		t.Errorf("after a suspend of 2 min: estimate %d ms (%v), want at least %d: early by the suspend",
			est, ok, redisNow/1000+(2*time.Minute).Milliseconds())
	}
	c.sample.Store(&clockSample{redisUS: redisNow, sent: sent, sentWall: sent.Add(-maxClockAge - time.Minute).UnixNano()})
	if _, ok := c.nowMS(); ok {
		t.Error("a sample older than maxClockAge by the wall clock (a long suspend) was used")
	}
}

// TestRedisForgetAfterScriptFlush: a plain claim's forget finds its script missing
// after a Redis restart (NOSCRIPT) and loads it again, so emptied streams do not pile
// up in the cart index; the claim's cart leaves them out either way.
func TestRedisForgetAfterScriptFlush(t *testing.T) {
	srv := newRedisServerIn(t, 16380, 16389)
	srv.start()
	st := openTestRedis(t, srv.url())
	ctx := context.Background()
	gen := st.userBase("u") + "gen"
	for i := 0; i < pruneDeadAfter; i++ {
		sid, g := fmt.Sprint("s", i), fmt.Sprint("g", i)
		st.rdb.HSet(ctx, gen, sid, g, "~"+sid, g)
	}
	st.rdb.HSet(ctx, gen, "live", "g9", "~live", "g8", "~gone", "g7")
	if err := st.rdb.ScriptFlush(ctx).Err(); err != nil { // as a restarted Redis
		t.Fatal(err)
	}
	_, cart, _, err := st.claimIdem(ctx, "u", idemHash("u", "k"), "f", "", time.Now(), nil)
	if err != nil || len(cart.sids) != 1 || cart.sids[0] != "live" {
		t.Fatalf("claim: got %+v %v, want only the live stream", cart, err)
	}
	st.background.Wait()
	m := mustGens(t, st, gen)
	if len(m) != 2 || m["live"] != "g9" || m["~live"] != "g8" {
		t.Errorf("index after the forget: got %v, want only live and its record", m)
	}
}

// TestRedisCartIndexGenerationFields: a hold batch adds the field <generation> =
// "+stream" to the user's cart index, and the order that empties the cart there
// deletes the fields its claim read, so a returning buyer's index holds only its live
// streams (no "~" record, nothing for forget.lua); a hold that raced the order keeps
// its stream; a field read empty by a cart read is pruned; an index with fields of
// both forms is read the same by the plain claim, claim.lua and cartStreams, and
// claim.lua lists a one-stream cart in the order index.
func TestRedisCartIndexGenerationFields(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	gen := st.userBase("u") + "gen"
	var sales []Sale
	for i := 0; i < 2*pruneDeadAfter; i++ {
		sales = append(sales, e.sale(t, e.stream(t), 5, 5))
	}
	// A returning buyer of many streams: its index is one field while it holds, and
	// gone once each order emptied its cart.
	for i := 0; i < 2*pruneDeadAfter; i++ {
		h := e.mustHold(t, "u", "", sales[i].ID, 1, time.Hour)
		if m := mustGens(t, st, gen); len(m) != 1 || m[h.ID] != "+"+sales[i].StreamID {
			t.Fatalf("index after hold %d: got %v, want %s = +%s", i, m, h.ID, sales[i].StreamID)
		}
		res, err := e.checkout("u", fmt.Sprint("k", i), nil, e.now)
		if err != nil || !res.Created || res.Order.StreamID != sales[i].StreamID {
			t.Fatalf("checkout %d: %+v %v", i, res.Order, err)
		}
		st.background.Wait()
		if m := mustGens(t, st, gen); len(m) != 0 {
			t.Fatalf("index after order %d: got %v, want none", i, m)
		}
	}
	if ords, err := st.ListOrders(e.ctx, "u"); err != nil || len(ords) != 2*pruneDeadAfter {
		t.Fatalf("orders: got %d %v, want %d", len(ords), err, 2*pruneDeadAfter)
	}

	// A hold that races the order: the claim read the first hold's field, the second
	// hold (another batch) added its own before the done mark, which leaves it.
	a, b := sales[0], sales[1]
	h1 := e.mustHold(t, "u", "", a.ID, 1, time.Hour)
	_, cart, _, err := st.claimIdem(e.ctx, "u", idemHash("u", "race"), "f", "", e.now, nil)
	if err != nil || len(cart.sids) != 1 || cart.sids[0] != a.StreamID {
		t.Fatalf("claim: got %+v %v, want %s", cart, err, a.StreamID)
	}
	h2 := e.mustHold(t, "u", "", a.ID, 1, time.Hour)
	st.finishCheckout("u", cart, idemHash("u", "race"), "done|x", a.StreamID)
	st.background.Wait()
	if m := mustGens(t, st, gen); len(m) != 1 || m[h2.ID] != "+"+a.StreamID {
		t.Fatalf("index after a raced order: got %v, want only the later hold's %s", m, h2.ID)
	}
	hs, err := st.ListHolds(e.ctx, "u", e.now)
	if err != nil || len(hs) != 2 {
		t.Fatalf("holds: got %+v %v, want %s and %s", hs, err, h1.ID, h2.ID)
	}

	// Both forms at once: b by the earlier form (stream → generation), a by fields.
	st.streamKeyedIndex = true
	e.mustHold(t, "u", "", b.ID, 1, time.Hour)
	st.streamKeyedIndex = false
	m := mustGens(t, st, gen)
	if len(m) != 2 || m[b.StreamID] == "" {
		t.Fatalf("index of both forms: got %v", m)
	}
	want := []string{a.StreamID, b.StreamID}
	slices.Sort(want)
	if c, dead := cartFromIndex(m); !slices.Equal(c.sids, want) || len(dead) != 0 {
		t.Errorf("plain claim's cart: got %v (dead %v), want %v", c.sids, dead, want)
	}
	if sids, _, err := st.cartStreams(e.ctx, "u"); err != nil || !slices.Equal(sids, want) {
		t.Errorf("cartStreams: got %v %v, want %v", sids, err, want)
	}
	for f, v := range m { // claim.lua on a copy under another user
		st.rdb.HSet(e.ctx, st.userBase("w")+"gen", f, v)
	}
	st.plainClaims.Store(false)
	_, wc, _, err := st.claimIdem(e.ctx, "w", idemHash("w", "k"), "f", "", e.now, nil)
	st.plainClaims.Store(true)
	if err != nil || !slices.Equal(wc.sids, want) {
		t.Fatalf("claim.lua's cart: got %+v %v, want %v", wc, err, want)
	}

	// A stream of one field: claim.lua lists it in the order index, and the order
	// deletes the field.
	st.plainClaims.Store(false)
	defer st.plainClaims.Store(true)
	c := sales[2]
	hv := e.mustHold(t, "v", "", c.ID, 1, time.Hour)
	res, err := e.checkout("v", "k", nil, e.now)
	if err != nil || !res.Created || res.Order.StreamID != c.StreamID {
		t.Fatalf("checkout by claim.lua: %+v %v", res.Order, err)
	}
	st.background.Wait()
	if ok, _ := st.rdb.SIsMember(e.ctx, st.userBase("v")+"orders", c.StreamID).Result(); !ok {
		t.Errorf("claim.lua did not list %s in the order index", c.StreamID)
	}
	if m := mustGens(t, st, st.userBase("v")+"gen"); len(m) != 0 {
		t.Errorf("v's index after the order: got %v, want none (hold %s)", m, hv.ID)
	}

	// A field whose cart is read empty (its order's done mark lost) is pruned by the
	// next cart read of two streams.
	if err := st.rdb.HSet(e.ctx, gen, "lost", "+"+sales[3].StreamID).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ListHolds(e.ctx, "u", e.now); err != nil {
		t.Fatal(err)
	}
	st.background.Wait()
	if ok, err := st.rdb.HExists(e.ctx, gen, "lost").Result(); err != nil || ok {
		t.Errorf("a field read empty: HEXISTS got %v %v, want false (pruned)", ok, err)
	}
	if m := mustGens(t, st, gen); len(m) != 2 {
		t.Errorf("index after the prune: got %v, want a's and b's fields", m)
	}
	e.checkInvariants(t)
}

// TestRedisPlainClaimInto: a plain claim answers the cart in the caller's userCart (a
// one-stream cart's stream in its own array, no slice of its own) and the key in use
// after it goes to claim.lua (the SET's nil answer), which answers a cart of its own.
func TestRedisPlainClaimInto(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	sale := e.sale(t, e.stream(t), 5, 5)
	e.mustHold(t, "u", "", sale.ID, 1, time.Hour)
	ih := idemHash("u", "k")
	var into userCart
	_, cart, done, err := st.claimIdem(e.ctx, "u", ih, "fp", "", e.now, &into)
	if err != nil || done != nil || cart != &into {
		t.Fatalf("claim: got %p %v %v, want the caller's cart %p", cart, done, err, &into)
	}
	if len(cart.sids) != 1 || cart.sids[0] != sale.StreamID || &cart.sids[0] != &into.one[0] || cart.genKey == "" || cart.idemKey == "" {
		t.Fatalf("claim's cart: %+v, want the sale's stream in its one, the key's names", cart)
	}
	var other userCart
	_, cart, _, err = st.claimIdem(e.ctx, "u", ih, "other", "", e.now, &other)
	if !errors.Is(err, ErrConflict) || cart != nil || other.sids != nil {
		t.Fatalf("claim of a key in use with another body: %+v %v (into %+v), want a conflict from claim.lua", cart, err, other)
	}
}
