package cart

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Since 2026-12-06 an order leaves its key's pending mark (no done mark follows): a call
// that finds a pending mark answers from the stream's record of the key (see claimIdem).
// These tests cover what that changes: a retry while the mark is live, a node that dies
// between the steps, another body after the mark ran out, and concurrent retries.

// secondNode opens another node on st's Redis and prefix (closed when the test ends).
func secondNode(t *testing.T, st *RedisStore) *RedisStore {
	t.Helper()
	b, err := OpenRedis(context.Background(), testRedisURL, RedisOptions{Prefix: st.prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestRedisRetryWhileMarkLiveFindsOrder: a node places the order and dies before it
// answers (its claim and the checkout script ran; nothing after). A retry with the same
// key and body through another node, while the pending mark is still live, answers
// that order at once (it used to wait for a done mark and answer "in progress"), even
// after the buyer held in another stream; another body is a conflict; the mark stays.
func TestRedisRetryWhileMarkLiveFindsOrder(t *testing.T) {
	a := openTestRedis(t, testRedisURL)
	b := secondNode(t, a)
	ctx := context.Background()
	e := &env{st: a, ctx: ctx, now: time.Now().UTC(), putIn: map[string]int{}}
	s1, s2 := e.stream(t), e.stream(t)
	p1, p2 := e.product(t, s1, 5), e.product(t, s2, 5)
	e.mustHold(t, "u", p1.ID, "", 1, time.Hour)
	req := CheckoutRequest{OrderID: "order-1", UserID: "u", IdempotencyKey: "k", Fingerprint: "f"}
	ih := idemHash("u", "k")
	_, cart, _, err := a.claimIdem(ctx, "u", ih, "f", "", e.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, err := a.checkout(ctx, &checkoutCall{req: req, ih: ih, now: e.now, indexed: cart.indexed}, cart)
	if err != nil || !first.Created {
		t.Fatalf("first attempt: got %+v %v, want an order", first, err)
	}
	mark := a.rdb.Get(ctx, a.userBase("u")+"idem:"+ih).Val()
	e.mustHold(t, "u", p2.ID, "", 1, time.Hour) // the cart changed (stream 1 still in the index)

	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond) // no waiting for the mark
	defer cancel()
	req.OrderID = "order-2"
	again, err := b.Checkout(rctx, req, e.now.Add(time.Second))
	if err != nil || again.Created || again.Order.ID != "order-1" || again.Order.StreamID != s1 {
		t.Fatalf("retry through another node, the mark live: got %+v created %v %v, want order-1 of %s", again.Order, again.Created, err, s1)
	}
	req.Fingerprint = "another body"
	if _, err := b.Checkout(rctx, req, e.now.Add(time.Second)); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "another request") {
		t.Fatalf("another body: got %v, want a conflict (used with another request)", err)
	}
	b.background.Wait()
	if v := a.rdb.Get(ctx, a.userBase("u")+"idem:"+ih).Val(); v != mark {
		t.Fatalf("the key after the retries: %q, want the pending mark %q as it was", v, mark)
	}
	if got := e.getProduct(t, p2.ID); got.Held != 1 || got.Sold != 0 {
		t.Fatalf("stream 2's product: held %d sold %d, want 1 0 (not ordered)", got.Held, got.Sold)
	}
	e.checkInvariants(t)
}

// TestRedisNodeDiesBetweenClaimAndCheckout: a node claims the key and dies before the
// checkout script runs (no order). A retry through another node while the mark is live
// is "in progress" (409); once the mark ran out it takes the key over, finds no record
// and places the order, once; a retry then answers it.
func TestRedisNodeDiesBetweenClaimAndCheckout(t *testing.T) {
	a := openTestRedis(t, testRedisURL)
	b := secondNode(t, a)
	ctx := context.Background()
	e := &env{st: b, ctx: ctx, now: time.Now().UTC(), putIn: map[string]int{}}
	p := e.product(t, e.stream(t), 5)
	e.mustHold(t, "u", p.ID, "", 1, time.Hour)
	ih := idemHash("u", "k")
	if _, _, _, err := a.claimIdem(ctx, "u", ih, "f", "", e.now, nil); err != nil {
		t.Fatal(err)
	}
	req := CheckoutRequest{OrderID: "order-1", UserID: "u", IdempotencyKey: "k", Fingerprint: "f"}
	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := b.Checkout(rctx, req, e.now); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "in progress") {
		t.Fatalf("retry while the dead node's mark is live: got %v, want a conflict (in progress)", err)
	}
	expirePending(t, a, "u", ih)
	res, err := b.Checkout(ctx, req, e.now)
	if err != nil || !res.Created {
		t.Fatalf("retry after the mark ran out: got %+v %v, want a new order", res, err)
	}
	req.OrderID = "order-2"
	again, err := b.Checkout(ctx, req, e.now)
	if err != nil || again.Created || again.Order.ID != "order-1" {
		t.Fatalf("retry after the order: got %+v created %v %v, want order-1", again.Order, again.Created, err)
	}
	if os, err := b.ListOrders(ctx, "u"); err != nil || len(os) != 1 {
		t.Fatalf("orders: got %d %v, want 1", len(os), err)
	}
	e.checkInvariants(t)
}

// TestRedisAnotherBodyAfterMarkRanOutKeepsKey: after an order, once its pending mark ran
// out, a call with another body takes the key over (claim.lua), finds the order's
// record and answers conflict; it must leave the key bound to that order (the done
// mark), not free it: a retry with the first body afterwards, the buyer's cart now in
// another stream, still answers the first order and orders nothing there.
func TestRedisAnotherBodyAfterMarkRanOutKeepsKey(t *testing.T) {
	for _, plain := range []bool{true, false} {
		st := openTestRedis(t, testRedisURL)
		st.plainClaims.Store(plain)
		ctx := context.Background()
		e := &env{st: st, ctx: ctx, now: time.Now().UTC(), putIn: map[string]int{}}
		s1, s2 := e.stream(t), e.stream(t)
		p1, p2 := e.product(t, s1, 5), e.product(t, s2, 5)
		e.mustHold(t, "u", p1.ID, "", 1, time.Hour)
		first, err := e.checkout("u", "k", nil, e.now)
		if err != nil || !first.Created {
			t.Fatalf("plain %v: checkout: %+v %v", plain, first, err)
		}
		st.background.Wait()
		ih := idemHash("u", "k")
		expirePending(t, st, "u", ih)
		if _, err := e.checkout("u", "k", []string{"x"}, e.now); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "another request") {
			t.Fatalf("plain %v: another body after the mark ran out: got %v, want a conflict (used with another request)", plain, err)
		}
		st.background.Wait()
		if v := st.rdb.Get(ctx, st.userBase("u")+"idem:"+ih).Val(); !strings.HasPrefix(v, "done|"+s1+"|"+first.Order.ID+"|") {
			t.Fatalf("plain %v: the key after the conflict: %q, want the first order's done mark", plain, v)
		}
		e.mustHold(t, "u", p2.ID, "", 1, time.Hour)
		again, err := e.checkout("u", "k", nil, e.now.Add(time.Minute))
		if err != nil || again.Created || again.Order.ID != first.Order.ID {
			t.Fatalf("plain %v: the first body again: got %+v created %v %v, want %s", plain, again.Order, again.Created, err, first.Order.ID)
		}
		if got := e.getProduct(t, p2.ID); got.Held != 1 || got.Sold != 0 {
			t.Fatalf("plain %v: stream 2's product: held %d sold %d, want 1 0", plain, got.Held, got.Sold)
		}
		e.checkInvariants(t)
	}
}

// TestRedisConcurrentRetriesOfAnOrder: 16 calls at once with the key of a placed order,
// the buyer's cart now in another stream, twice: while the order's pending mark is
// live, and after it ran out (one call takes the key over, the others find its mark
// live or the done mark it writes). Every call with the first body answers the order,
// every call with another body is a conflict; nothing else is ordered. Through two
// nodes.
func TestRedisConcurrentRetriesOfAnOrder(t *testing.T) {
	a := openTestRedis(t, testRedisURL)
	b := secondNode(t, a)
	ctx := context.Background()
	e := &env{st: a, ctx: ctx, now: time.Now().UTC(), putIn: map[string]int{}}
	s1, s2 := e.stream(t), e.stream(t)
	p1, p2 := e.product(t, s1, 5), e.product(t, s2, 5)
	e.mustHold(t, "u", p1.ID, "", 1, time.Hour)
	first, err := e.checkout("u", "k", nil, e.now)
	if err != nil || !first.Created {
		t.Fatalf("checkout: %+v %v", first, err)
	}
	e.mustHold(t, "u", p2.ID, "", 1, time.Hour)
	storm := func(what string) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := []*RedisStore{a, b}[i%2]
				fp := "[]" // e.checkout's fingerprint of the first body
				if i%4 == 3 {
					fp = "another body"
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a bound against hanging only
				defer cancel()
				res, err := st.Checkout(rctx, CheckoutRequest{OrderID: uuid.NewString(), UserID: "u", IdempotencyKey: "k", Fingerprint: fp}, e.now.Add(time.Minute))
				switch {
				case fp != "[]":
					if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "another request") {
						errs <- errors.New("another body: got " + errString(err) + ", want a conflict (used with another request)")
					}
				case err != nil || res.Created || res.Order.ID != first.Order.ID:
					errs <- errors.New("the first body: got order " + res.Order.ID + " " + errString(err) + ", want " + first.Order.ID)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("%s: %v", what, err)
		}
		a.background.Wait()
		b.background.Wait()
	}
	storm("the mark live")
	expirePending(t, a, "u", idemHash("u", "k"))
	storm("the mark run out")
	if v := a.rdb.Get(ctx, a.userBase("u")+"idem:"+idemHash("u", "k")).Val(); !strings.HasPrefix(v, "done|"+s1+"|"+first.Order.ID+"|") {
		t.Fatalf("the key after the retries: %q, want the order's done mark", v)
	}
	if got := e.getProduct(t, p2.ID); got.Held != 1 || got.Sold != 0 {
		t.Fatalf("stream 2's product: held %d sold %d, want 1 0", got.Held, got.Sold)
	}
	if os, err := a.ListOrders(ctx, "u"); err != nil || len(os) != 1 {
		t.Fatalf("orders: got %d %v, want 1", len(os), err)
	}
	e.checkInvariants(t)
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
