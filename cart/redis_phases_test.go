package cart

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestRedisPhaseInstructions splits what a buyer costs redis-server into the steps
// of a sale (exact instruction counts, whatever else the machine does). It runs only
// with LIVECART_CALLGRIND_PID, the pid of a redis-server under callgrind at
// LIVECART_BENCH_REDIS_URL, and dumps callgrind's counts after each step (callgrind
// zeroes them at each dump): 2,000 distinct buyers hold one unit each, then claim their
// idempotency keys, then run the stream's checkout scripts, then forget the emptied
// streams from the cart indexes (the "done" marks until 2026-12-06), then sweeps the due holds once they have run out (every hold was ordered: what
// the sweep pays for the holds' entries it still finds); twice (or LIVECART_PHASE_ROUNDS
// times), then as returning buyers of a new sale in a new stream.
//
//	valgrind --tool=callgrind --callgrind-out-file=/tmp/p.cg redis-server --port 19278 --save '' --appendonly no &
//	LIVECART_CALLGRIND_PID=<valgrind's pid> LIVECART_BENCH_REDIS_URL=redis://127.0.0.1:19278/0 \
//	  go test ./cart -run TestRedisPhaseInstructions -v
//	for f in /tmp/p.cg.*; do grep -m1 Trigger $f; callgrind_annotate $f | grep TOTALS; done
func TestRedisPhaseInstructions(t *testing.T) {
	pid := os.Getenv("LIVECART_CALLGRIND_PID")
	if pid == "" {
		t.Skip("set LIVECART_CALLGRIND_PID (see the comment)")
	}
	st := openTestRedis(t, os.Getenv("LIVECART_BENCH_REDIS_URL"))
	dump := func(label string) {
		time.Sleep(200 * time.Millisecond)
		out, err := exec.Command("callgrind_control", "-d", label, pid).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v", out, err)
		}
	}
	const n = 2000
	par := func(f func(i int)) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 256)
		for i := 0; i < n; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() { defer wg.Done(); defer func() { <-sem }(); f(i) }()
		}
		wg.Wait()
	}
	ctx := context.Background()
	// the usual checkout's fingerprint (an empty body's), as Checkout passes it on
	fp := storedFingerprint(emptyCheckoutFingerprint)
	rounds := 2 // LIVECART_PHASE_ROUNDS: more rounds of returning buyers (each of a new stream)
	if n, err := strconv.Atoi(os.Getenv("LIVECART_PHASE_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	for round := 1; round <= rounds; round++ {
		now := time.Now().UTC()
		sale := benchSale(t, st, now)
		dump(fmt.Sprintf("r%d-setup", round))
		par(func(i int) {
			req := HoldRequest{ID: uuid.NewString(), UserID: fmt.Sprint("u", i), SaleID: sale.ID, Quantity: 1, ExpiresAt: now.Add(time.Minute)}
			if _, _, err := st.HoldUnits(ctx, req, now); err != nil {
				t.Error(err)
			}
		})
		dump(fmt.Sprintf("r%d-holds", round))
		type cl struct {
			ih   string
			cart *userCart
		}
		cls := make([]cl, n)
		par(func(i int) {
			u := fmt.Sprint("u", i)
			ih := idemHash(u, fmt.Sprint("k", round))
			_, cart, _, err := st.claimIdem(ctx, u, ih, fp, "", now, nil)
			if err != nil {
				t.Error(err)
			}
			cls[i] = cl{ih, cart}
		})
		dump(fmt.Sprintf("r%d-claims", round))
		res := make([]CheckoutResult, n)
		cs := make([]*checkoutCall, n)
		par(func(i int) {
			u := fmt.Sprint("u", i)
			c := &checkoutCall{req: CheckoutRequest{OrderID: uuid.NewString(), UserID: u, IdempotencyKey: "k", Fingerprint: fp}, ih: cls[i].ih, now: now, indexed: cls[i].cart.indexed}
			r, err := st.checkout(ctx, c, cls[i].cart)
			if err != nil {
				t.Error(err)
			}
			res[i], cs[i] = r, c
		})
		st.background.Wait()
		dump(fmt.Sprintf("r%d-checkouts", round))
		par(func(i int) {
			// as settle does: no done mark since 2026-12-06, the emptied stream leaves
			// the cart index
			if cs[i].emptied != "" {
				st.finishCheckout(fmt.Sprint("u", i), cls[i].cart, cls[i].ih, "", cs[i].emptied)
			}
		})
		st.background.Wait()
		dump(fmt.Sprintf("r%d-finish", round))
		if n, _, err := st.ReleaseExpiredHolds(ctx, now.Add(2*time.Minute), 1_000_000); err != nil || n != 0 {
			t.Errorf("sweep after the checkouts: %d released, %v; want 0 (every hold was ordered)", n, err)
		}
		dump(fmt.Sprintf("r%d-sweep", round))
	}
}
