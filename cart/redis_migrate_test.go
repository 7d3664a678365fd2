package cart

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// TestRedisMigratesCartSets: a store opened on data with carts indexed in the older
// form (the set P{u:<uid>}:holds, written until 2026-12-01 evening) moves them into
// the generation hash once, marks the prefix migrated, and reads every cart as it
// read it before: the claim lists the same streams, an emptied record of generation
// "0" still forgets its stream, and a hold indexed only by the old set is ordered.
func TestRedisMigratesCartSets(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	ctx := e.ctx
	sale := e.sale(t, e.stream(t), 5, 5)
	if _, err := e.hold("buyer", "", sale.ID, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The older form, as the version before c4cc69c wrote it: buyer's hold indexed by
	// the set alone; u1 in s1 by the set, in s2 by both (the hash wins); u2's only
	// stream emptied by an order ("~s3" of generation "0").
	ub := st.userBase
	st.rdb.Del(ctx, ub("buyer")+"gen")
	st.rdb.SAdd(ctx, ub("buyer")+"holds", sale.StreamID)
	st.rdb.SAdd(ctx, ub("u1")+"holds", "s1", "s2")
	st.rdb.HSet(ctx, ub("u1")+"gen", "s2", "g2")
	st.rdb.SAdd(ctx, ub("u2")+"holds", "s3")
	st.rdb.HSet(ctx, ub("u2")+"gen", "~s3", "0")
	st.rdb.Del(ctx, st.prefix+"migrated:cartsets")
	before := map[string]map[string]string{}
	for _, u := range []string{"buyer", "u1", "u2"} {
		sids, _, err := st.cartStreams(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		before[u] = map[string]string{}
		for _, sid := range sids {
			before[u][sid] = "listed"
		}
	}

	// A new node opens the same prefix (every node restarted on the new version).
	st2, err := OpenRedis(ctx, testRedisURL, RedisOptions{Prefix: st.prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	st2.background.Wait()
	if !st2.cartSetsGone.Load() {
		t.Fatal("after open: cartSetsGone false, want the migration done")
	}
	if v := st2.rdb.Get(ctx, st.prefix+"migrated:cartsets").Val(); v != "1" {
		t.Fatalf("marker: got %q, want \"1\"", v)
	}
	for _, u := range []string{"buyer", "u1", "u2"} {
		if n := st2.rdb.Exists(ctx, ub(u)+"holds").Val(); n != 0 {
			t.Errorf("%s: the old set is still there", u)
		}
		sids, _, err := st2.cartStreams(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		after := map[string]string{}
		for _, sid := range sids {
			after[sid] = "listed"
		}
		if !maps.Equal(after, before[u]) {
			t.Errorf("%s: cart streams after the migration %v, want %v as before", u, after, before[u])
		}
	}
	wantGen := map[string]map[string]string{
		"u1": {"s1": "0", "s2": "g2"},
		"u2": {"s3": "0", "~s3": "0"},
	}
	for u, want := range wantGen {
		if got := st2.rdb.HGetAll(ctx, ub(u)+"gen").Val(); !maps.Equal(got, want) {
			t.Errorf("%s gen: got %v, want %v", u, got, want)
		}
	}
	// The claims (which no longer read the set) see what the set said.
	_, c1, _, err := st2.claimIdem(ctx, "u1", idemHash("u1", "k"), "f", "", e.now, nil)
	if err != nil || !maps.Equal(c1.gens, map[string]string{"s1": "0", "s2": "g2"}) {
		t.Errorf("u1 claim: got %+v %v, want s1 (0) and s2 (g2)", c1, err)
	}
	_, c2, _, err := st2.claimIdem(ctx, "u2", idemHash("u2", "k"), "f", "", e.now, nil)
	if err != nil || len(c2.sids) != 0 {
		t.Errorf("u2 claim: got %+v %v, want no stream (emptied)", c2, err)
	}
	e.st = st2
	res, err := e.checkout("buyer", "k", nil, e.now)
	if err != nil || !res.Created || res.Order.StreamID != sale.StreamID {
		t.Fatalf("checkout of the hold indexed by the old set: got %+v %v, want a new order", res, err)
	}
	e.checkInvariants(t)
}

// TestRedisClaimReadsCartSetsUntilMigrated: a store whose migration has not run (Redis
// was down at open) still reads the older form in its claims.
func TestRedisClaimReadsCartSetsUntilMigrated(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	ctx := context.Background()
	st.cartSetsGone.Store(false)
	st.rdb.SAdd(ctx, st.userBase("u")+"holds", "s1")
	_, c, _, err := st.claimIdem(ctx, "u", idemHash("u", "k"), "f", "", time.Now(), nil)
	if err != nil || !maps.Equal(c.gens, map[string]string{"s1": "0"}) {
		t.Fatalf("claim before the migration: got %+v %v, want s1 (0)", c, err)
	}
}

func TestGlobEscape(t *testing.T) {
	if got, want := globEscape(`lc*:a?[b]\`), `lc\*:a\?\[b\]\\`; got != want {
		t.Fatalf("globEscape: got %q, want %q", got, want)
	}
}

// TestRedisMigrationErrorLeavesNoMarker: a command of the migration that fails (here
// TYPE, denied by an ACL on a private redis-server; in production a timeout or a
// dropped connection) fails the migration: the prefix is not marked migrated while a
// set is left unmoved, claims keep reading the set, and the next Ping tries again.
func TestRedisMigrationErrorLeavesNoMarker(t *testing.T) {
	srv := startRedisServer(t)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", srv.port)})
	defer admin.Close()
	const prefix = "lcmig:"
	ub := prefix + "{u:u1}:"
	if err := admin.SAdd(ctx, ub+"holds", "s1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "default", "-type").Err(); err != nil {
		t.Fatal(err)
	}
	st, err := OpenRedis(ctx, srv.url(), RedisOptions{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.background.Wait()
	if v := admin.Get(ctx, prefix+"migrated:cartsets").Val(); v != "" {
		t.Errorf("marker after a failed migration: got %q, want none (u1's set was not moved)", v)
	}
	_, c, _, err := st.claimIdem(ctx, "u1", idemHash("u1", "k"), "f", "", time.Now(), nil)
	if err != nil || !maps.Equal(c.gens, map[string]string{"s1": "0"}) {
		t.Errorf("claim after a failed migration: got %+v %v, want s1 (0)", c, err)
	}

	if err := admin.Do(ctx, "ACL", "SETUSER", "default", "+type").Err(); err != nil {
		t.Fatal(err)
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	st.background.Wait()
	if v := admin.Get(ctx, prefix+"migrated:cartsets").Val(); v != "1" {
		t.Errorf("marker after the retry: got %q, want \"1\"", v)
	}
	if got := admin.HGetAll(ctx, ub+"gen").Val(); got["s1"] != "0" {
		t.Errorf("u1 gen after the retry: got %v, want s1 = 0", got)
	}
}

// TestRedisCloseStopsMigration: Close does not wait for the cart-set migration to go
// through the whole keyspace (seconds on a large one, at the first start of the
// version); the migration stops between two commands and the next store to open does
// it again from the start (it is idempotent).
func TestRedisCloseStopsMigration(t *testing.T) {
	srv := startRedisServer(t)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", srv.port)})
	defer admin.Close()
	const prefix, users = "lcmig:", 5000
	p := admin.Pipeline()
	for i := range users {
		p.SAdd(ctx, fmt.Sprintf("%s{u:u%d}:holds", prefix, i), "s1")
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := OpenRedis(ctx, srv.url(), RedisOptions{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the migration is under way
	start := time.Now()
	st.Close()
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Close took %v, want it not to wait for the migration", d)
	}
	if left := admin.Exists(ctx, prefix+"{u:u0}:holds", fmt.Sprintf("%s{u:u%d}:holds", prefix, users-1)).Val(); left == 0 {
		t.Skip("the migration finished within 50 ms: too fast to tell")
	}
	if v := admin.Get(ctx, prefix+"migrated:cartsets").Val(); v != "" {
		t.Errorf("marker after a stopped migration: got %q, want none", v)
	}

	st2, err := OpenRedis(ctx, srv.url(), RedisOptions{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	st2.background.Wait()
	st2.Close()
	if n := admin.DBSize(ctx).Val(); n != users+1 { // one gen hash per user and the marker
		t.Errorf("keys after the second migration: got %d, want %d", n, users+1)
	}
}

// TestRedisStreamExpirySetOlderForm: holds are due in the global holddue set only;
// the stream's own expiry set (P{sid}:exp, written by every hold until 2026-12-04) is
// no longer written, and what the older version left in it is still cleaned: an
// ordered hold leaves it (of an older cart, and of a newer cart, which the usual
// checkout's lean path would order without its id), a released one too, and the sweep still releases a hold
// that only the set names.
func TestRedisStreamExpirySetOlderForm(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	ctx := e.ctx
	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 5)
	expKey := st.base(sid) + "exp"
	e.mustHold(t, "new", "", sale.ID, 1, time.Hour)
	if n := st.rdb.Exists(ctx, expKey).Val(); n != 0 {
		t.Fatalf("after a new hold: the stream's expiry set exists, want it no longer written")
	}
	// As the older hold.lua left them: each hold in the stream's set too.
	a := e.mustHold(t, "a", "", sale.ID, 1, time.Hour)
	b := e.mustHold(t, "b", "", sale.ID, 1, time.Minute)
	c := e.mustHold(t, "c", "", sale.ID, 1, time.Minute)
	for _, h := range []Hold{a, b, c} {
		toOlderCart(t, st, sid, h.UserID) // (holds of that time were their own keys)
		st.rdb.ZAdd(ctx, expKey, redis.Z{Score: float64(h.ExpiresAt.UnixMicro()), Member: h.ID})
	}
	// d's cart is of the newer form (a field of uh:d) but the set names it too: the
	// usual checkout's lean path (which does not read the hold's id) must leave it to
	// the path that takes it out of the set.
	d := e.mustHold(t, "d", "", sale.ID, 1, time.Hour)
	st.rdb.ZAdd(ctx, expKey, redis.Z{Score: float64(d.ExpiresAt.UnixMicro()), Member: d.ID})
	// c's sweep entry is lost (as after a crash of the older version between the two):
	// only the stream's set names it.
	if n := st.rdb.ZRem(ctx, st.prefix+holdBatchDueKey, holdBatchMember(sid, []string{c.ID}, []string{"c"})).Val(); n != 1 {
		t.Fatalf("c's sweep entry: %d removed, want 1", n)
	}
	if res, err := e.checkout("a", "k", nil, e.now); err != nil || !res.Created {
		t.Fatalf("checkout: got %+v %v, want an order", res, err)
	}
	if err := st.rdb.ZScore(ctx, expKey, a.ID).Err(); err != redis.Nil {
		t.Errorf("ordered hold in the stream's expiry set: got %v, want it gone", err)
	}
	// (the usual body's fingerprint "": the short form, see checkoutCall.args)
	if res, err := st.Checkout(ctx, CheckoutRequest{OrderID: uuid.NewString(), UserID: "d", IdempotencyKey: "k"}, e.now); err != nil || !res.Created {
		t.Fatalf("checkout of d: got %+v %v, want an order", res, err)
	}
	if err := st.rdb.ZScore(ctx, expKey, d.ID).Err(); err != redis.Nil {
		t.Errorf("ordered hold of a newer cart in the stream's expiry set: got %v, want it gone", err)
	}
	n, _, err := st.ReleaseExpiredHolds(ctx, e.now.Add(2*time.Minute), 10)
	if err != nil || n != 2 {
		t.Fatalf("sweep: got %d released, %v; want 2 (b by holddue, c by the stream's set)", n, err)
	}
	if left := st.rdb.ZCard(ctx, expKey).Val(); left != 0 {
		t.Errorf("stream's expiry set after the sweep: %d members left, want 0", left)
	}
	if s := e.getSale(t, sale.ID); s.Remaining != 7 || s.Held != 1 || s.Sold != 2 {
		t.Errorf("sale after: got remaining %d held %d sold %d, want 7, 1, 2", s.Remaining, s.Held, s.Sold)
	}
	e.checkInvariants(t)
}

// TestRedisOlderNodesSweepNoNewerHold: a hold of the newest form is due in holddue:b,
// never in holddue:u or holddue, the sets nodes of earlier versions sweep (such a node
// took a newer member for a hold id, found none and dropped the entry, so the hold's
// units stayed held for good); holds of the older forms due in holddue:u (made
// 2026-12-04 to 12-06) and holddue (its own key, before) are still released by this
// version's sweep, as is the newer one.
func TestRedisOlderNodesSweepNoNewerHold(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	ctx := e.ctx
	sid := e.stream(t)
	sale := e.sale(t, sid, 10, 5)
	n := e.mustHold(t, "n", "", sale.ID, 2, time.Minute)
	for _, key := range []string{holdDueKey, olderHoldDueKey} {
		if c := st.rdb.ZCard(ctx, st.prefix+key).Val(); c != 0 {
			t.Fatalf("after a new hold: %s has %d entries, want 0 (older nodes sweep it)", key, c)
		}
	}
	if err := st.rdb.ZScore(ctx, st.prefix+holdBatchDueKey, holdBatchMember(sid, []string{n.ID}, []string{"n"})).Err(); err != nil {
		t.Fatalf("new hold in %s: %v, want its entry", holdBatchDueKey, err)
	}
	// A hold as the version of 2026-12-04 left it: "sid hid uid" in holddue:u.
	u := e.mustHold(t, "u", "", sale.ID, 1, time.Minute)
	if st.rdb.ZRem(ctx, st.prefix+holdBatchDueKey, holdBatchMember(sid, []string{u.ID}, []string{"u"})).Val() != 1 {
		t.Fatal("the 12-04 hold's newer entry: none to move")
	}
	st.rdb.ZAdd(ctx, st.prefix+holdDueKey, redis.Z{Score: float64(u.ExpiresAt.UnixMicro()), Member: holdDueMember(sid, u.ID, "u")})
	// A hold as the earlier version left it: its own key, "sid hid" in holddue.
	o := e.mustHold(t, "o", "", sale.ID, 1, time.Minute)
	toOlderCart(t, st, sid, "o")
	if st.rdb.ZRem(ctx, st.prefix+holdBatchDueKey, holdBatchMember(sid, []string{o.ID}, []string{"o"})).Val() != 1 {
		t.Fatal("the older hold's newer entry: none to move")
	}
	st.rdb.ZAdd(ctx, st.prefix+olderHoldDueKey, redis.Z{Score: float64(o.ExpiresAt.UnixMicro()), Member: dueMember(sid, o.ID)})
	released, _, err := st.ReleaseExpiredHolds(ctx, e.now.Add(2*time.Minute), 10)
	if err != nil || released != 3 {
		t.Fatalf("sweep: got %d released, %v; want 3 (the newer and the two older holds)", released, err)
	}
	for _, key := range []string{holdBatchDueKey, holdDueKey, olderHoldDueKey} {
		if c := st.rdb.ZCard(ctx, st.prefix+key).Val(); c != 0 {
			t.Errorf("%s after the sweep: %d entries, want 0", key, c)
		}
	}
	if s := e.getSale(t, sale.ID); s.Remaining != 10 || s.Held != 0 {
		t.Errorf("sale after the sweep: remaining %d held %d, want 10, 0", s.Remaining, s.Held)
	}
	e.checkInvariants(t)
}
