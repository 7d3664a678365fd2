package cart

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// testRedisURL is the shared Redis every developer machine and CI runs. Tests use a
// random key prefix each and delete their keys after; they never flush.
// LIVECART_TEST_REDIS_URL moves them (and the item tests) to another db, say one
// parallel worker's own.
var testRedisURL = cmp.Or(os.Getenv("LIVECART_TEST_REDIS_URL"), "redis://127.0.0.1:6379/0")

// openTestRedis opens a RedisStore on url with a fresh random prefix and deletes the
// prefix's keys when the test ends. A Redis that does not answer fails the test.
func openTestRedis(t testing.TB, url string) *RedisStore {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "lctest:" + hex.EncodeToString(b) + ":"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := OpenRedis(ctx, url, RedisOptions{Prefix: prefix})
	if err != nil {
		t.Fatalf("OpenRedis %s: %v (is redis-server running?)", url, err)
	}
	st.background.Wait() // the migration at open (migrateCartSets) is done
	t.Cleanup(func() {
		st.background.Wait() // nothing lands after the clean-up
		deleteKeys(t, st.rdb, prefix)
		st.Close()
	})
	return st
}

// deleteKeys removes every key under prefix (SCAN + UNLINK, never FLUSHDB).
func deleteKeys(t testing.TB, rdb *redis.Client, prefix string) {
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		rdb.Unlink(ctx, batch...)
	}
	if err := iter.Err(); err != nil {
		t.Logf("cleaning up %s*: %v", prefix, err)
	}
}

func TestRedisStore(t *testing.T) {
	runStoreSuite(t, func(t *testing.T) Store { return openTestRedis(t, testRedisURL) })
}

// TestRedisSweepByAnyNode: a hold made through one node is released by another after
// the first is gone, and stale sweep entries (left by crashed calls) do not hide it.
func TestRedisSweepByAnyNode(t *testing.T) {
	b := openTestRedis(t, testRedisURL) // the node that sweeps
	a, err := OpenRedis(context.Background(), testRedisURL, RedisOptions{Prefix: b.prefix})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: a, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	sale := e.sale(t, e.stream(t), 5, 5)
	if _, err := e.hold("u", "", sale.ID, 2, time.Minute); err != nil {
		t.Fatal(err)
	}
	a.Close() // the node that made the hold dies
	stale := make([]redis.Z, 50)
	for i := range stale {
		stale[i] = redis.Z{Score: 1, Member: dueMember(sale.StreamID, fmt.Sprint("gone-", i))}
	}
	if err := b.rdb.ZAdd(e.ctx, b.prefix+"holddue", stale...).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range stale { // and as many batches of holds that are gone
		stale[i].Member = holdBatchMember(sale.StreamID, []string{fmt.Sprint("gone-", i), fmt.Sprint("also-gone-", i)}, []string{"u", "v"})
	}
	if err := b.rdb.ZAdd(e.ctx, b.prefix+holdBatchDueKey, stale...).Err(); err != nil {
		t.Fatal(err)
	}
	n, ch, err := b.ReleaseExpiredHolds(e.ctx, e.now.Add(time.Minute), 10)
	if err != nil || n != 1 || len(ch.Sales) != 1 || ch.Sales[0].Remaining != 5 {
		t.Fatalf("sweep by the other node: got %d %+v %v, want 1 released, remaining 5", n, ch, err)
	}
	for _, key := range []string{holdBatchDueKey, holdDueKey, olderHoldDueKey} {
		if left, _ := b.rdb.ZCard(e.ctx, b.prefix+key).Result(); left != 0 {
			t.Fatalf("sweep set %s: got %d entries left, want 0", key, left)
		}
	}
	e.st = b
	e.checkInvariants(t)
}

// TestRedisKeysShareSlots: every key of a stream carries the stream's hash tag, every
// key of a user the user's, and the rest are the few global indexes.
func TestRedisKeysShareSlots(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, 5, 5)
	if _, err := e.hold("u", "", sale.ID, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := e.checkout("u", "k", nil, e.now); err != nil {
		t.Fatal(err)
	}
	keys, err := st.rdb.Keys(e.ctx, st.prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	global := map[string]bool{"streams": true, holdBatchDueKey: true, "saledue": true, "pidx:" + sale.ProductID: true, "sidx:" + sale.ID: true,
		"migrated:cartsets": true}
	for _, k := range keys {
		rest := strings.TrimPrefix(k, st.prefix)
		switch {
		case strings.HasPrefix(rest, "{"+sid+"}:"), strings.HasPrefix(rest, "{u:u}:"), global[rest]:
		default:
			t.Errorf("key %q: got no stream or user hash tag, want one", k)
		}
	}
}

// TestRedisDown: a Redis that does not answer is ErrUnavailable.
func TestRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	st, err := OpenRedis(context.Background(), "redis://"+addr+"/0", RedisOptions{})
	if err != nil {
		t.Fatalf("OpenRedis on a closed port: got %v, want a store that waits for Redis", err)
	}
	defer st.Close()
	if err := st.Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping on a closed port: got %v, want ErrUnavailable", err)
	}
	if _, err := st.ListStreams(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ListStreams on a closed port: got %v, want ErrUnavailable", err)
	}
}

// TestRedisCartForgetsEmptyStreams: a stream where the user's cart became empty is
// dropped from the user's index after a cart read, so later reads visit only the
// streams with holds; a hold there again brings it back.
func TestRedisCartForgetsEmptyStreams(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	a, b := e.sale(t, e.stream(t), 5, 5), e.sale(t, e.stream(t), 5, 5)
	if _, err := e.hold("u", "", a.ID, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := e.checkout("u", "k1", nil, e.now); err != nil {
		t.Fatal(err)
	}
	if _, err := e.hold("u", "", b.ID, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	holds, err := st.ListHolds(e.ctx, "u", e.now)
	if err != nil || len(holds) != 1 {
		t.Fatalf("ListHolds: got %d %v, want 1", len(holds), err)
	}
	st.background.Wait()
	sids, _, _ := st.cartStreams(e.ctx, "u")
	if len(sids) != 1 || sids[0] != b.StreamID {
		t.Fatalf("cart streams: got %v, want only %s", sids, b.StreamID)
	}
	if _, err := e.hold("u", "", a.ID, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	if holds, _ := st.ListHolds(e.ctx, "u", e.now); len(holds) != 2 {
		t.Fatalf("ListHolds after holding in the forgotten stream: got %d, want 2", len(holds))
	}
	e.checkInvariants(t)
}

// TestRedisCheckoutForgetsEmptiedStream: an order that empties the user's cart in its
// stream takes that stream out of the user's cart index (recorded after the answer,
// off the request's path), so the user's next checkout elsewhere is a one-stream
// checkout again; a hold that came after the claim keeps the stream listed.
func TestRedisCheckoutForgetsEmptiedStream(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	a, b := e.sale(t, e.stream(t), 5, 5), e.sale(t, e.stream(t), 5, 5)
	if _, err := e.hold("u", "", a.ID, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := e.checkout("u", "k1", nil, e.now); err != nil {
		t.Fatal(err)
	}
	st.background.Wait()
	if sids, _, err := st.cartStreams(e.ctx, "u"); err != nil || len(sids) != 0 {
		t.Fatalf("cart streams after the order emptied the cart: got %v %v, want none", sids, err)
	}
	if _, err := e.hold("u", "", b.ID, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	if sids, _, _ := st.cartStreams(e.ctx, "u"); len(sids) != 1 || sids[0] != b.StreamID {
		t.Fatalf("cart streams after a hold in b: got %v, want only %s", sids, b.StreamID)
	}
	// The next claim sees only b (a plain claim leaves a's records to a later prune,
	// and the order index to the checkout; claim.lua forgets a and lists b).
	_, cart, _, err := st.claimIdem(e.ctx, "u", idemHash("u", "k2"), "f", "", e.now, nil)
	if err != nil || len(cart.sids) != 1 || cart.sids[0] != b.StreamID || (cart.indexed != b.StreamID && cart.indexed != "") {
		t.Fatalf("claim: got %+v %v, want only %s", cart, err, b.StreamID)
	}
	// A stale generation (a hold came after the claim) does not forget the stream.
	st.finishCheckout("u", &userCart{gens: map[string]string{"stale": "+" + b.StreamID}}, "x", "done", b.StreamID)
	st.background.Wait()
	if sids, _, _ := st.cartStreams(e.ctx, "u"); len(sids) != 1 {
		t.Fatalf("cart streams after an emptied record with a stale generation: got %v, want %s kept", sids, b.StreamID)
	}
	e.checkInvariants(t)
}

// TestRedisEmptiedRecordAfterPrune: the record that an order emptied a stream can land
// after a cart read pruned that stream; a later hold there gives the stream a new
// generation, so the late record never hides it.
func TestRedisEmptiedRecordAfterPrune(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	a := e.sale(t, e.stream(t), 5, 5)
	if _, err := e.hold("u", "", a.ID, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	_, cart, _, err := st.claimIdem(e.ctx, "u", idemHash("u", "k"), "f", "", e.now, nil)
	if err != nil || len(cart.sids) != 1 {
		t.Fatalf("claim: got %+v %v, want one stream", cart, err)
	}
	for f := range cart.gens {
		st.rdb.HDel(e.ctx, st.userBase("u")+"gen", f) // as a prune would
	}
	h, err := e.hold("u", "", a.ID, 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st.finishCheckout("u", &userCart{gens: cart.gens}, "x", "done", a.StreamID) // lands late
	st.background.Wait()
	holds, err := st.ListHolds(e.ctx, "u", e.now)
	if err != nil || len(holds) != 2 {
		t.Fatalf("ListHolds: got %d holds %v, want 2 (the new one %s too)", len(holds), err, h.ID)
	}
}

// TestRedisReplyPacking: records in script replies are packed as <length>:<bytes>;
// text with colons, digits, quotes, backslashes, slashes and multi-byte characters
// comes back exactly, and a damaged record is an error, not a wrong value.
func TestRedisReplyPacking(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	title, desc := `12:ab 3:"x" \ / é 💡`, "4:\n\t:5:"
	p, err := st.CreateProduct(e.ctx, Product{ID: uuid.NewString(), StreamID: sid, SKU: "1:", Title: title,
		Description: desc, PriceCents: 5, Currency: "EUR", Stock: 1}, 0)
	if err != nil || p.Title != title || p.Description != desc || p.SKU != "1:" || p.Stock != 1 {
		t.Fatalf("CreateProduct: got %q %q %q stock %d %v, want %q %q %q 1", p.Title, p.Description, p.SKU, p.Stock, err, title, desc, "1:")
	}
	for _, bad := range []string{"3:ab", "x:ab", "2:ab3:", "-1:"} {
		if m, err := unpackHash(bad); err == nil {
			t.Errorf("unpackHash(%q): got %v, want an error", bad, m)
		}
	}
	if m, err := unpackHash("1:a0:"); err != nil || len(m) != 1 || m["a"] != "" {
		t.Errorf(`unpackHash("1:a0:"): got %v %v, want a = ""`, m, err)
	}
}

// TestRedisCheckoutKeyRecordOnlyWithOrder: the key's record in the stream is written
// with the order, in the user's orders there (the hash uo:<uid>, field "k:"+hash): a
// checkout that places none (its holds expired) leaves no record, so the key's next
// checkout orders; one that places its order leaves it beside the order's record,
// and no key or order of the older form.
func TestRedisCheckoutKeyRecordOnlyWithOrder(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	sale := e.sale(t, e.stream(t), 5, 5)
	orders := st.base(sale.StreamID) + "uo:u"
	field := "k:" + idemHash("u", "k")
	e.mustHold(t, "u", "", sale.ID, 1, time.Minute)
	if _, err := e.checkout("u", "k", nil, e.now.Add(2*time.Minute)); !errors.Is(err, ErrHoldExpired) {
		t.Fatalf("checkout of an expired hold: got %v, want ErrHoldExpired", err)
	}
	if n := st.rdb.Exists(e.ctx, orders).Val(); n != 0 {
		t.Fatalf("the user's orders after a checkout that placed no order: %d keys, want none", n)
	}
	e.mustHold(t, "u", "", sale.ID, 1, time.Minute)
	res, err := e.checkout("u", "k", nil, e.now)
	if err != nil || !res.Created {
		t.Fatalf("checkout with the key again: got %+v %v, want a new order", res, err)
	}
	if v := st.rdb.HGet(e.ctx, orders, field).Val(); !strings.HasPrefix(v, res.Order.ID+"|") {
		t.Fatalf("the key's record after the order: %q, want %s|…", v, res.Order.ID)
	}
	if v := st.rdb.HGet(e.ctx, orders, res.Order.ID).Val(); !strings.HasPrefix(v, "|500|EUR|"+micros(e.now)+"|") {
		t.Fatalf("the order's record: %q, want |500|EUR|%s|…", v, micros(e.now))
	}
	older := []string{st.base(sale.StreamID) + "idem:" + idemHash("u", "k"), st.base(sale.StreamID) + "o:" + res.Order.ID}
	if n := st.rdb.Exists(e.ctx, older...).Val(); n != 0 {
		t.Fatalf("keys of the older form: %d, want none", n)
	}
	if l := st.rdb.LRange(e.ctx, st.base(sale.StreamID)+"orders", 0, -1).Val(); len(l) != 1 || l[0] != res.Order.ID+" u" {
		t.Fatalf("the stream's orders: %q, want [%s u]", l, res.Order.ID)
	}
	e.checkInvariants(t)
}

// TestRedisOrderLeavesItsPendingMark: an order leaves its key's pending mark as it is
// (24 h from its claim), by the plain claim and by claim.lua: no done mark follows. A
// retry while the mark is live answers the order from the stream's record of the key
// and leaves the mark; a retry after it ran out takes the key over, answers the order
// so and writes the done mark, which keeps the key's time to live; later retries read
// it. Another body is a conflict in each state.
func TestRedisOrderLeavesItsPendingMark(t *testing.T) {
	for _, plain := range []bool{true, false} {
		st := openTestRedis(t, testRedisURL)
		st.plainClaims.Store(plain)
		e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
		sale := e.sale(t, e.stream(t), 5, 5)
		e.mustHold(t, "u", "", sale.ID, 1, time.Hour)
		res, err := e.checkout("u", "k", nil, e.now)
		if err != nil || !res.Created {
			t.Fatalf("plain %v: checkout: %+v %v", plain, res, err)
		}
		st.background.Wait()
		k := st.userBase("u") + "idem:" + idemHash("u", "k")
		mark := func(what, prefix string) {
			t.Helper()
			st.background.Wait()
			if v := st.rdb.Get(e.ctx, k).Val(); !strings.HasPrefix(v, prefix) {
				t.Fatalf("plain %v, %s: the key: %q, want %s…", plain, what, v, prefix)
			}
			if ttl := st.rdb.PTTL(e.ctx, k).Val(); ttl < IdempotencyTTL-time.Minute || ttl > IdempotencyTTL {
				t.Fatalf("plain %v, %s: the key's TTL: %v, want 24 h", plain, what, ttl)
			}
		}
		retry := func(what string) {
			t.Helper()
			e.mustHold(t, "u", "", sale.ID, 1, time.Hour) // the cart changed: the same order still
			again, err := e.checkout("u", "k", nil, e.now.Add(time.Minute))
			if err != nil || again.Created || again.Order.ID != res.Order.ID || again.Order.StreamID != sale.StreamID || len(again.Order.Items) != 1 {
				t.Fatalf("plain %v, %s: the same body again: got %+v created %v %v, want order %s", plain, what, again.Order, again.Created, err, res.Order.ID)
			}
			if _, err := e.checkout("u", "k", []string{"other"}, e.now.Add(time.Minute)); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "another request") {
				t.Fatalf("plain %v, %s: another body: got %v, want a conflict (used with another request)", plain, what, err)
			}
		}
		mark("after the order", "pending|")
		retry("the pending mark live")
		mark("after a retry while the mark is live", "pending|")
		expirePending(t, st, "u", idemHash("u", "k"))
		retry("the pending mark run out")
		mark("after a retry that took the key over", "done|"+sale.StreamID+"|"+res.Order.ID+"|")
		retry("the done mark")
		mark("after a retry of the done mark", "done|"+sale.StreamID+"|"+res.Order.ID+"|")
		if got := e.getSale(t, sale.ID); got.Sold != 1 {
			t.Fatalf("plain %v: sold %d, want 1", plain, got.Sold)
		}
		e.checkInvariants(t)
	}
}

// TestRedisDoneMarkNeverOutlivesItsKey: a done mark whose pending mark is gone (Redis
// restarted or failed over without it between the claim and the mark, which lands
// off the request's path) is not written: SET … KEEPTTL alone would make the key
// anew with no time to live, kept forever. (A retry with the key then gets its order
// from the stream's record, as when the mark never lands.)
func TestRedisDoneMarkNeverOutlivesItsKey(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	ctx := context.Background()
	ih := idemHash("u", "k")
	k := st.userBase("u") + "idem:" + ih
	st.finishCheckout("u", &userCart{}, ih, "done|s|o|1|f", "")
	st.background.Wait()
	if ttl, err := st.rdb.PTTL(ctx, k).Result(); err != nil || ttl != -2*time.Nanosecond {
		t.Fatalf("the key after a done mark without its pending mark: PTTL %v %v, want no key (-2ns)", ttl, err)
	}
}
