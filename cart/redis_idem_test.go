package cart

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// TestRedisRetryAfterLostAnswerFindsOrder: a checkout whose order was placed but whose
// answer and done mark were lost (the client went away, the node died, Redis blinked
// as the mark was written) leaves only the stream's record of the key. A cart read in
// between forgets the now empty stream; the retry with the same key and body must
// still answer that order (200), not order the buyer's holds elsewhere a second time.
func TestRedisRetryAfterLostAnswerFindsOrder(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	ctx := context.Background()
	e := &env{st: st, ctx: ctx, now: time.Now().UTC(), putIn: map[string]int{}}
	s1, s2 := e.stream(t), e.stream(t)
	p1, p2 := e.product(t, s1, 5), e.product(t, s2, 5)
	if _, err := e.hold("u", p1.ID, "", 1, time.Hour); err != nil {
		t.Fatal(err)
	}

	// The first attempt: claimed and ordered, then nothing more (no done mark).
	req := CheckoutRequest{OrderID: "order-1", UserID: "u", IdempotencyKey: "k", Fingerprint: "f"}
	ih := idemHash(req.UserID, req.IdempotencyKey)
	_, cart, _, err := st.claimIdem(ctx, "u", ih, req.Fingerprint, "", e.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.checkout(ctx, &checkoutCall{req: req, ih: ih, now: e.now, indexed: cart.indexed}, cart)
	if err != nil || !first.Created {
		t.Fatalf("first attempt: got %+v %v, want an order", first, err)
	}
	// Its pending mark runs out (as after idemPendingTTL).
	expirePending(t, st, "u", ih)

	// The buyer reads the cart (stream 1 is empty there now) and holds in stream 2.
	if hs, err := st.ListHolds(ctx, "u", e.now); err != nil || len(hs) != 0 {
		t.Fatalf("ListHolds: got %v %v, want none", hs, err)
	}
	st.background.Wait() // the cart index forgets stream 1
	if _, err := e.hold("u", p2.ID, "", 1, time.Hour); err != nil {
		t.Fatal(err)
	}

	req.OrderID = "order-2"
	again, err := st.Checkout(ctx, req, e.now.Add(time.Second))
	if err != nil || again.Created || again.Order.ID != first.Order.ID {
		t.Fatalf("retry with the same key and body: got order %q created %v err %v, want order %q again",
			again.Order.ID, again.Created, err, first.Order.ID)
	}
	if got := e.getProduct(t, p2.ID); got.Sold != 0 || got.Held != 1 {
		t.Errorf("stream 2's product: got sold %d held %d, want 0 1 (not ordered)", got.Sold, got.Held)
	}
	e.checkInvariants(t)
}

// expirePending runs a checkout's pending mark on the user's key out of its time,
// as if the checkout had died idemPendingTTL ago.
func expirePending(t *testing.T, st *RedisStore, userID, ih string) {
	t.Helper()
	ctx := context.Background()
	k := st.userBase(userID) + "idem:" + ih
	v, err := st.rdb.Get(ctx, k).Result()
	f := strings.Split(v, "|")
	if err != nil || len(f) != 4 || f[0] != "pending" {
		t.Fatalf("pending mark: got %q %v, want pending|token|fp|until", v, err)
	}
	f[3] = "0"
	if err := st.rdb.Set(ctx, k, strings.Join(f, "|"), IdempotencyTTL).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestRedisHoldAfterNoScriptStaysInCart: after a Redis restart a hold batch finds its
// script missing, and the pipeline has written the users' cart generations already,
// before any hold. A checkout that empties the user's cart in that stream just then
// records that generation as emptied; the hold the batch makes next must still be in
// the cart (the generation written after the script must be a new one).
func TestRedisHoldAfterNoScriptStaysInCart(t *testing.T) {
	srv := newRedisServerIn(t, 16380, 16389)
	srv.start()
	st := openTestRedis(t, srv.url())
	ctx := context.Background()
	e := &env{st: st, ctx: ctx, now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	p := e.product(t, sid, 5)
	h0, err := e.hold("u", p.ID, "", 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.rdb.ScriptFlush(ctx).Err(); err != nil { // as a restarted Redis
		t.Fatal(err)
	}
	st.afterHoldNoScript = func() {
		st.afterHoldNoScript = nil
		res, err := st.Checkout(ctx, CheckoutRequest{OrderID: uuid.NewString(), UserID: "u", IdempotencyKey: "k", Fingerprint: "f"}, e.now)
		if err != nil || len(res.Order.Items) != 1 {
			t.Errorf("checkout of the first hold: got %+v %v, want an order", res.Order, err)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			if n, _ := st.rdb.HExists(ctx, st.userBase("u")+"gen", h0.ID).Result(); !n {
				break // the order that emptied the cart deleted the generation its claim read
			}
			if time.Now().After(deadline) {
				t.Errorf("no emptied record after the checkout")
				break
			}
		}
	}
	h, err := e.hold("u", p.ID, "", 2, time.Hour)
	if err != nil {
		t.Fatalf("hold after the script was flushed: %v", err)
	}
	hs, err := st.ListHolds(ctx, "u", e.now)
	if err != nil || len(hs) != 1 || hs[0].ID != h.ID {
		t.Fatalf("cart after the hold: got %+v %v, want the hold %s", hs, err, h.ID)
	}
	e.checkInvariants(t)
}

// TestRedisSameKeyInProgressAnswersConflictBeforeDeadline: while a checkout with a key
// is in progress, a second call with the same key and a deadline sooner than the wait
// for the first (an API request's redis.request_timeout) answers conflict before its
// deadline, as the contract says, not unavailable at it.
func TestRedisSameKeyInProgressAnswersConflictBeforeDeadline(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	p := e.product(t, e.stream(t), 5)
	if _, err := e.hold("u", p.ID, "", 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	ih := idemHash("u", "k")
	if _, _, _, err := st.claimIdem(context.Background(), "u", ih, "f", "", e.now, nil); err != nil {
		t.Fatal(err) // the first call: claimed, still in progress
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := st.Checkout(ctx, CheckoutRequest{OrderID: "o", UserID: "u", IdempotencyKey: "k", Fingerprint: "f"}, e.now)
	if took := time.Since(start); !errors.Is(err, ErrConflict) || took > 500*time.Millisecond {
		t.Fatalf("same key while in progress, 500 ms deadline: got %v after %v, want conflict before the deadline", err, took)
	}
}

// TestRedisUsualFingerprintBothForms: the usual body's fingerprint (the empty body's) is
// kept as "" in the key's marks and the stream's key record (storedFingerprint); marks
// and records written before, with it in full, still answer a retry with that body,
// and a retry with another body is still a conflict, by the plain claim and by
// claim.lua.
func TestRedisUsualFingerprintBothForms(t *testing.T) {
	for _, plain := range []bool{true, false} {
		st := openTestRedis(t, testRedisURL)
		st.plainClaims.Store(plain)
		ctx := context.Background()
		e := &env{st: st, ctx: ctx, now: time.Now().UTC(), putIn: map[string]int{}}
		sale := e.sale(t, e.stream(t), 5, 5)
		e.mustHold(t, "u", "", sale.ID, 1, time.Hour)
		req := CheckoutRequest{OrderID: uuid.NewString(), UserID: "u", IdempotencyKey: "k", Fingerprint: emptyCheckoutFingerprint}
		first, err := st.Checkout(ctx, req, e.now)
		if err != nil || !first.Created {
			t.Fatalf("plain %v: checkout: %+v %v", plain, first, err)
		}
		st.background.Wait()
		ih := idemHash("u", "k")
		k := st.userBase("u") + "idem:" + ih
		rk := st.base(sale.StreamID) + "uo:u"
		mark, rec := st.rdb.Get(ctx, k).Val(), st.rdb.HGet(ctx, rk, "k:"+ih).Val()
		if f := strings.Split(mark, "|"); len(f) != 4 || f[0] != "pending" || f[2] != "" || !strings.HasSuffix(rec, "|") {
			t.Fatalf("plain %v: the pending mark %q (an order leaves it) and the key record %q: want each with an empty fingerprint", plain, mark, rec)
		}
		retry := func(what, fp string) (CheckoutResult, error) {
			r := req
			r.OrderID, r.Fingerprint = uuid.NewString(), fp
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			return st.Checkout(rctx, r, e.now.Add(time.Second))
		}
		same := func(what string) {
			t.Helper()
			if again, err := retry(what, emptyCheckoutFingerprint); err != nil || again.Created || again.Order.ID != first.Order.ID {
				t.Fatalf("plain %v, %s: the same body again: got order %q created %v %v, want %q", plain, what, again.Order.ID, again.Created, err, first.Order.ID)
			}
			if _, err := retry(what, "another body"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "another request") {
				t.Fatalf("plain %v, %s: another body: got %v, want a conflict (used with another request)", plain, what, err)
			}
		}
		same("the pending mark of the short form")
		expirePending(t, st, "u", ih)
		same("the pending mark of the short form run out") // the retry writes the done mark
		st.background.Wait()
		if v := st.rdb.Get(ctx, k).Val(); v != "done|"+sale.StreamID+"|"+rec {
			t.Fatalf("plain %v: the done mark %q, want done|%s|%s", plain, v, sale.StreamID, rec)
		}
		same("the done mark of the short form")
		// The forms written before: the fingerprint in full.
		full := "done|" + sale.StreamID + "|" + rec + emptyCheckoutFingerprint
		if err := st.rdb.Set(ctx, k, full, redis.KeepTTL).Err(); err != nil {
			t.Fatal(err)
		}
		same("a done mark of the full form")
		// The stream's key record of the full form, the key's mark a pending one that ran
		// out (an attempt whose done mark was lost): the retry takes the key over and the
		// checkout script judges by the record.
		if err := st.rdb.HSet(ctx, rk, "k:"+ih, strings.TrimSuffix(rec, "|")+"|"+emptyCheckoutFingerprint).Err(); err != nil {
			t.Fatal(err)
		}
		stale := func() {
			st.background.Wait()
			if err := st.rdb.Set(ctx, k, "pending|tok|x|0", IdempotencyTTL).Err(); err != nil {
				t.Fatal(err)
			}
		}
		stale()
		if again, err := retry("a key record of the full form", emptyCheckoutFingerprint); err != nil || again.Created || again.Order.ID != first.Order.ID {
			t.Fatalf("plain %v, a key record of the full form: the same body again: got order %q created %v %v, want %q", plain, again.Order.ID, again.Created, err, first.Order.ID)
		}
		stale()
		if _, err := retry("a key record of the full form", "another body"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "another request") {
			t.Fatalf("plain %v, a key record of the full form: another body: got %v, want a conflict (used with another request)", plain, err)
		}
		// A pending mark of the full form, with the key's record: the record answers.
		st.background.Wait()
		pending := "pending|tok|" + emptyCheckoutFingerprint + "|" + fmt.Sprint(time.Now().Add(time.Hour).UnixMilli())
		if err := st.rdb.Set(ctx, k, pending, IdempotencyTTL).Err(); err != nil {
			t.Fatal(err)
		}
		same("a pending mark of the full form and the key's record")
		// Without a record (another key, in progress): the same body waits for it (in
		// progress), another body is refused at once.
		req.IdempotencyKey = "k2"
		if err := st.rdb.Set(ctx, st.userBase("u")+"idem:"+idemHash("u", "k2"), pending, IdempotencyTTL).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := retry("a pending mark of the full form", emptyCheckoutFingerprint); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "in progress") {
			t.Fatalf("plain %v, a pending mark of the full form: the same body: got %v, want a conflict (in progress)", plain, err)
		}
		if _, err := retry("a pending mark of the full form", "another body"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "another request") {
			t.Fatalf("plain %v, a pending mark of the full form: another body: got %v, want a conflict (used with another request)", plain, err)
		}
		e.checkInvariants(t)
	}
}
