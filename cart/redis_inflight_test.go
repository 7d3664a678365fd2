package cart

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// batchOverlap wraps a streamQueues run so that a stream's batch that goes while no
// other is at Redis waits for a second batch of the queue to start and finish first:
// the second batch overtakes the first, the most two batches in flight can reorder.
// It counts the batches that were overtaken and the most in flight.
//
// A lone batch waits for no time when a second one is sure to come: sure is how many
// calls the test is sure to queue so far (expect adds a phase's: calls of goroutines
// that wait for no batch of the phase before they queue theirs, so never for a later
// phase's), so while at least secondBatchMin of them are still to be taken,
// enough will wait for a second batch to go (the first lone batch is always one such,
// so some batch is overtaken however slowly the test runs). Other lone batches wait
// up to wait, for more reordering where it comes.
type batchOverlap struct {
	wait time.Duration
	sure int

	mu         sync.Mutex
	inFlight   int
	max        int
	overtaken  int
	batches    int
	taken      int           // calls taken into batches
	stuck      int           // lone batches whose sure second batch never came
	nextFinish chan struct{} // closed when the next batch finishes
}

// sureWaitBound only stops a broken queue from hanging the test: a second batch
// that is sure to come comes.
const sureWaitBound = 30 * time.Second

// expect adds n calls sure to be queued (a phase's, before it begins).
func (o *batchOverlap) expect(n int) {
	o.mu.Lock()
	o.sure += n
	o.mu.Unlock()
}

func wrapOverlap[T any](o *batchOverlap, run func(string, []T)) func(string, []T) {
	o.nextFinish = make(chan struct{})
	return func(sid string, calls []T) {
		o.mu.Lock()
		o.inFlight++
		o.batches++
		o.taken += len(calls)
		o.max = max(o.max, o.inFlight)
		alone, finished := o.inFlight == 1, o.nextFinish
		wait := o.wait
		sure := o.taken+secondBatchMin <= o.sure
		if sure {
			wait = sureWaitBound
		}
		o.mu.Unlock()
		if alone {
			select {
			case <-finished: // a later batch went to Redis and was answered first
				o.mu.Lock()
				o.overtaken++
				o.mu.Unlock()
			case <-time.After(wait):
				if sure {
					o.mu.Lock()
					o.stuck++
					o.mu.Unlock()
				}
			}
		}
		run(sid, calls)
		o.mu.Lock()
		o.inFlight--
		close(o.nextFinish)
		o.nextFinish = make(chan struct{})
		o.mu.Unlock()
	}
}

func (o *batchOverlap) check(t *testing.T, what string) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	t.Logf("%s: %d batches, at most %d in flight, %d overtaken by a later one", what, o.batches, o.max, o.overtaken)
	if o.stuck > 0 {
		t.Errorf("%s: %d lone batches waited %v for a second batch that was sure to come", what, o.stuck, sureWaitBound)
	}
	if o.max != batchesInFlight || o.overtaken == 0 {
		t.Errorf("%s: at most %d batches in flight and %d overtaken, want %d and some: the test did not reorder batches",
			what, o.max, o.overtaken, batchesInFlight)
	}
}

// TestRedisOvertakenBatchesKeepGuarantees: with two batches of a stream at Redis at
// once, a later batch may run (and be answered) before an earlier one. Forced so for
// every batch that can be overtaken (holds and checkouts of one stream, from many
// buyers at once), the contract holds: no unit held or sold beyond a sale's quantity
// or a product's stock, the per-buyer limit counts held and bought units, the same
// key in parallel places one order (the others get it or conflict, none a second
// order), the same key with another body is a conflict, a retry right after the
// answer gets the same order, every hold ordered is ordered once, and the counts
// add up.
func TestRedisOvertakenBatchesKeepGuarantees(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	ctx := context.Background()
	const (
		buyers   = 40
		perBuyer = 6 // concurrent holds of one unit of the sale, and of the product
		limit    = 3
		quantity = buyers*limit + 10 // every buyer can hold the limit, not more
		stock    = 45                // fewer than the buyers want
	)
	holdsO, checkoutsO := &batchOverlap{wait: 300 * time.Millisecond}, &batchOverlap{wait: 300 * time.Millisecond}
	// A batch takes at most 16 checkouts, so the first lone one leaves a second batch
	// sure to come even if all the buyers' checkouts queued before it went (a starved
	// sender): see batchOverlap.
	st.checkouts.max = 16
	st.holds.run = wrapOverlap(holdsO, st.holds.run)
	st.checkouts.run = wrapOverlap(checkoutsO, st.checkouts.run)

	e := &env{st: st, ctx: ctx, now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, quantity, limit)
	prod := e.product(t, sid, stock)
	user := func(b int) string { return fmt.Sprintf("buyer-%d", b) }

	// Phase 1: every buyer holds perBuyer units of the sale and of the product at once.
	holdsO.expect(buyers * perBuyer * 2)
	type held struct {
		sale, prod []string
	}
	holds := make([]held, buyers)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for b := range buyers {
		for range perBuyer {
			for _, onSale := range []bool{true, false} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var h Hold
					var err error
					if onSale {
						h, err = e.hold(user(b), "", sale.ID, 1, time.Hour)
					} else {
						h, err = e.hold(user(b), prod.ID, "", 1, time.Hour)
					}
					switch {
					case err == nil:
						mu.Lock()
						if onSale {
							holds[b].sale = append(holds[b].sale, h.ID)
						} else {
							holds[b].prod = append(holds[b].prod, h.ID)
						}
						mu.Unlock()
					case errors.Is(err, ErrSoldOut), errors.Is(err, ErrLimitExceeded):
					default:
						t.Errorf("hold of %s: %v", user(b), err)
					}
				}()
			}
		}
	}
	wg.Wait()
	saleHeld, prodHeld := 0, 0
	for b, h := range holds {
		if len(h.sale) > limit {
			t.Errorf("%s holds %d units of the sale, limit %d", user(b), len(h.sale), limit)
		}
		saleHeld += len(h.sale)
		prodHeld += len(h.prod)
	}
	if saleHeld != buyers*limit || prodHeld != stock {
		t.Errorf("held %d of the sale's %d units and %d of the product's %d, want %d and all", saleHeld, quantity, prodHeld, stock, buyers*limit)
	}
	e.checkInvariants(t)

	// Phase 2: every buyer checks out with one key three times at once, and once with
	// the same key and another body. One checkout per buyer is sure to be queued (by
	// the call that claims her key; the others with it wait for its order).
	checkoutsO.expect(buyers)
	type answer struct {
		order   Order
		created bool
		fp      string
		err     error
	}
	answers := make([][]answer, buyers)
	for b := range buyers {
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fp := "whole cart"
				if i == 3 {
					fp = "another body"
				}
				res, err := st.Checkout(ctx, CheckoutRequest{OrderID: uuid.NewString(), UserID: user(b), StreamID: sid,
					IdempotencyKey: "k", Fingerprint: fp}, e.now)
				mu.Lock()
				answers[b] = append(answers[b], answer{res.Order, res.Created, fp, err})
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	ordered := map[string]string{} // order id → buyer
	sold := 0
	for b, as := range answers {
		orderID, created, fp := "", 0, ""
		for _, a := range as {
			switch {
			case a.err == nil:
				if orderID != "" && a.order.ID != orderID {
					t.Errorf("%s: orders %s and %s with one key", user(b), orderID, a.order.ID)
				}
				orderID = a.order.ID
				if a.created {
					created++
					fp = a.fp // the body that placed the order (either: the same request)
				}
			case errors.Is(a.err, ErrConflict):
			default:
				t.Errorf("%s: checkout: %v", user(b), a.err)
			}
		}
		want := len(holds[b].sale) + len(holds[b].prod)
		if want == 0 {
			continue
		}
		if created != 1 {
			t.Errorf("%s: %d orders created with one key, want 1", user(b), created)
			continue
		}
		// A retry right after the answers: the same order, not created again.
		res, err := st.Checkout(ctx, CheckoutRequest{OrderID: uuid.NewString(), UserID: user(b), StreamID: sid,
			IdempotencyKey: "k", Fingerprint: fp}, e.now)
		if err != nil || res.Created || res.Order.ID != orderID {
			t.Errorf("%s: retry: order %q created %v err %v, want order %q again", user(b), res.Order.ID, res.Created, err, orderID)
		}
		units := 0
		for _, it := range res.Order.Items {
			units += it.Quantity
		}
		if units != want {
			t.Errorf("%s: order of %d units, want the %d held", user(b), units, want)
		}
		sold += units
		ordered[orderID] = user(b)
	}
	if sold != saleHeld+stock {
		t.Errorf("sold %d units in %d orders, want %d", sold, len(ordered), saleHeld+stock)
	}
	if s := e.getSale(t, sale.ID); s.Sold != saleHeld || s.Held != 0 || s.Remaining != quantity-saleHeld {
		t.Errorf("sale after the orders: sold %d held %d remaining %d, want %d 0 %d", s.Sold, s.Held, s.Remaining, saleHeld, quantity-saleHeld)
	}
	if p := e.getProduct(t, prod.ID); p.Sold != stock || p.Held != 0 || p.Stock != 0 {
		t.Errorf("product after the orders: sold %d held %d stock %d, want %d 0 0", p.Sold, p.Held, p.Stock, stock)
	}
	os, err := st.ListStreamOrders(ctx, sid)
	if err != nil || len(os) != len(ordered) {
		t.Errorf("stream orders: %d %v, want %d", len(os), err, len(ordered))
	}
	e.checkInvariants(t)

	// Phase 3: the limit counts bought units: with units of the sale left, every buyer
	// (each bought the limit) is refused more, concurrently.
	holdsO.expect(buyers * (limit + 1))
	more := make([]int, buyers)
	for b := range buyers {
		for range limit + 1 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.hold(user(b), "", sale.ID, 1, time.Hour)
				switch {
				case err == nil:
					mu.Lock()
					more[b]++
					mu.Unlock()
				case errors.Is(err, ErrLimitExceeded):
				default:
					t.Errorf("hold of %s over the limit: %v, want limit_exceeded", user(b), err)
				}
			}()
		}
	}
	wg.Wait()
	for b := range buyers {
		if more[b] != 0 {
			t.Errorf("%s bought the limit of %d and held %d more", user(b), limit, more[b])
		}
	}
	e.checkInvariants(t)
	holdsO.check(t, "holds")
	checkoutsO.check(t, "checkouts")
}

// TestRedisRetryOvertakingDoneMarkGetsOrder: the done mark of a checkout goes in the
// shared pipeline after the answer; with two pipelines at Redis, a same-key retry's
// claim in the second may run before the mark in the first (held back here by a
// blocking command ahead of it). The retry then finds the key pending: it must wait
// for the mark and answer the same order (200), not conflict or a second order.
//
// Nothing here waits for a time: the blocking commands are BLPOPs without a timeout
// on lists of the test's own, answered only when the test pushes to them, so each
// pipeline ends at the step the test chooses however slowly its goroutines run (a
// fixed 1.2 s block let a starved test miss the moment only one sender was left).
func TestRedisRetryOvertakingDoneMarkGetsOrder(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	// The store's client ends a pipeline's read after 3 s; the batcher here reads
	// without a deadline, so a held pipeline lasts until the test releases it.
	opts, err := redis.ParseURL(testRedisURL)
	if err != nil {
		t.Fatal(err)
	}
	opts.ReadTimeout, opts.MaxRetries = -1, -1 // no read deadline; one attempt, as the store's
	rdb := redis.NewClient(opts)
	st.batch = &pipeBatcher{rdb: rdb, wg: &st.background}
	ctx := context.Background()
	firstGate, heldGate := st.prefix+"gate:first", st.prefix+"gate:held"
	release := func(gate string) {
		t.Helper()
		if err := st.rdb.LPush(ctx, gate, "go").Err(); err != nil { // the store's own client
			t.Fatalf("release %s: %v", gate, err)
		}
	}
	t.Cleanup(func() { // a test that failed half-way leaves no pipeline blocked
		st.rdb.LPush(ctx, firstGate, "go")
		st.rdb.LPush(ctx, heldGate, "go")
		st.background.Wait()
		rdb.Close()
	})

	e := &env{st: st, ctx: ctx, now: time.Now().UTC(), putIn: map[string]int{}}
	p := e.product(t, e.stream(t), 5)
	e.mustHold(t, "u", p.ID, "", 1, time.Hour)
	req := CheckoutRequest{OrderID: uuid.NewString(), UserID: "u", IdempotencyKey: "k", Fingerprint: "f"}
	ih := idemHash(req.UserID, req.IdempotencyKey)
	// The first call, up to its done mark.
	_, cart, _, err := st.claimIdem(ctx, "u", ih, req.Fingerprint, "", e.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &checkoutCall{req: req, ih: ih, now: e.now, indexed: cart.indexed}
	first, err := st.checkout(ctx, c, cart)
	if err != nil || !first.Created {
		t.Fatalf("first call: %+v %v", first, err)
	}
	// The checkout's batch queues a call of its own after its answer (the ZREM of the
	// holds it ordered): wait for the store's background work, so that no call but
	// the test's goes in the pipelines below.
	st.background.Wait()
	b := st.batch
	block := func(gate string) <-chan struct{} { // answered once gate gets an element
		return b.send(func(ctx context.Context, p redis.Pipeliner) { p.Do(ctx, "BLPOP", gate, 0) })
	}
	// waitFor waits until cond holds under b.mu. Each step it waits for is bound to
	// come (no pipeline ends before the test releases it); the deadline only stops a
	// broken batcher from hanging the test.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
			b.mu.Lock()
			ok := cond()
			senders, pending := b.senders, len(b.pending)
			b.mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: never came (%d senders, %d calls wait)", what, senders, pending)
			}
		}
	}
	pendingIs := func(n int, what string) {
		t.Helper()
		waitFor(fmt.Sprintf("%s: %d calls wait", what, n), func() bool { return len(b.pending) == n })
	}
	short := block(firstGate) // the one pipeline at Redis, until the test releases it
	pendingIs(0, "the first pipeline")
	// The next pipeline: a block, then the done mark behind it (8 calls wait: it goes
	// as the second at once).
	held := block(heldGate)
	v := fmt.Sprintf("done|%s|%s|%d|%s", first.Order.StreamID, first.Order.ID, e.now.UnixMicro(), req.Fingerprint)
	st.finishCheckout("u", &userCart{}, ih, v, "")
	for range secondBatchMin - 2 {
		b.send(func(ctx context.Context, p redis.Pipeliner) { p.Ping(ctx) })
	}
	pendingIs(0, "the second pipeline")
	release(firstGate)
	<-short // the first pipeline is answered: the retry's claim goes beside the mark's
	// Its sender looks for more calls once more before it ends; wait for that, or it
	// could take the retry's claim at once instead of leaving it to wait. The second
	// sender stays: its pipeline is held.
	waitFor("the first pipeline's sender ends", func() bool { return b.senders == 1 })
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a bound against hanging only
	defer cancel()
	retry := make(chan CheckoutResult, 1)
	go func() {
		res, err := st.Checkout(rctx, CheckoutRequest{OrderID: uuid.NewString(), UserID: "u", IdempotencyKey: "k", Fingerprint: "f"}, e.now)
		if err != nil {
			t.Errorf("retry: %v", err)
		}
		retry <- res
	}()
	pendingIs(1, "the retry's claim") // it waits: one pipeline is at Redis
	// With the claim, enough calls for a second pipeline: pings, then a read of the
	// key (what the claim found: the mark had not landed) and the release of the held
	// pipeline, so the done mark lands right after the claim, by Redis's order alone.
	for range secondBatchMin - 3 {
		b.send(func(ctx context.Context, p redis.Pipeliner) { p.Ping(ctx) })
	}
	var mark *redis.StringCmd
	b.send(func(ctx context.Context, p redis.Pipeliner) { mark = p.Get(ctx, st.userBase("u")+"idem:"+ih) })
	released := b.send(func(ctx context.Context, p redis.Pipeliner) { p.LPush(ctx, heldGate, "go") })
	<-released
	if got := mark.Val(); !strings.HasPrefix(got, "pending|") {
		t.Fatalf("the key beside the retry's claim: %q (%v), want pending: the claim did not overtake the done mark", got, mark.Err())
	}
	res := <-retry
	<-held
	if res.Created || res.Order.ID != first.Order.ID {
		t.Fatalf("retry: order %q created %v, want %q again", res.Order.ID, res.Created, first.Order.ID)
	}
	e.checkInvariants(t)
}
