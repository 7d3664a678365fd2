package cart

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestRedisPooledCallsAnswerTheirOwn: the hold calls, checkout items, plain claims and
// done marks are pooled (holdCalls, checkoutItems, plainClaims, doneMarks). Buyers
// hold and check out while others give up on theirs mid-batch (a deadline of a few
// hundred µs): every answered call gets its own answer (its user's hold, its user's
// order, its own key's replay), never one meant for a call that used
// the same pooled value before, and each buyer's order stays its own.
func TestRedisPooledCallsAnswerTheirOwn(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now(), putIn: map[string]int{}}
	sid := e.stream(t)
	sale := e.sale(t, sid, 100_000, 1)
	const rounds, buyers, quitters = 4, 120, 60
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, buyers+quitters)
		for i := range quitters {
			wg.Go(func() {
				// Gives up after a few hundred µs: mostly while its hold or checkout
				// waits for its batch, which then answers into the call it left.
				user := fmt.Sprintf("q%d-%d", round, i)
				d := time.Duration(50+rand.IntN(900)) * time.Microsecond
				ctx, cancel := context.WithTimeout(context.Background(), d)
				defer cancel()
				st.HoldUnits(ctx, HoldRequest{ID: uuid.NewString(), UserID: user, SaleID: sale.ID, Quantity: 1, ExpiresAt: e.now.Add(time.Hour)}, e.now)
				ctx2, cancel2 := context.WithTimeout(context.Background(), d)
				defer cancel2()
				st.Checkout(ctx2, CheckoutRequest{OrderID: uuid.NewString(), UserID: user, IdempotencyKey: "k"}, e.now)
			})
		}
		for i := range buyers {
			wg.Go(func() {
				user := fmt.Sprintf("b%d-%d", round, i)
				h, ch, err := st.HoldUnits(context.Background(), HoldRequest{ID: uuid.NewString(), UserID: user, SaleID: sale.ID, Quantity: 1, ExpiresAt: e.now.Add(time.Hour)}, e.now)
				switch {
				case err != nil:
					errs <- fmt.Errorf("hold of %s: %v", user, err)
					return
				case h.UserID != user || h.SaleID != sale.ID || h.Quantity != 1:
					errs <- fmt.Errorf("hold of %s answered %+v", user, h)
					return
				case len(ch.Sales) != 1 || ch.Sales[0].ID != sale.ID:
					errs <- fmt.Errorf("hold of %s: changes %+v", user, ch)
					return
				}
				orderID, key := uuid.NewString(), "key-"+user
				for try := range 2 { // the second is the key's replay: the same order
					res, err := st.Checkout(context.Background(), CheckoutRequest{OrderID: uuid.NewString(), UserID: user, IdempotencyKey: key}, e.now)
					if try == 0 {
						orderID = res.Order.ID
					}
					o := res.Order
					switch {
					case err != nil:
						errs <- fmt.Errorf("checkout %d of %s: %v", try, user, err)
						return
					case res.Created != (try == 0) || o.ID != orderID || o.UserID != user || o.StreamID != sid:
						errs <- fmt.Errorf("checkout %d of %s answered created %v, order %s of %s in %s (want %s)", try, user, res.Created, o.ID, o.UserID, o.StreamID, orderID)
						return
					case len(o.Items) != 1 || o.Items[0].SaleID != sale.ID || o.Items[0].Quantity != 1:
						errs <- fmt.Errorf("checkout %d of %s: items %+v, want its hold's unit", try, user, o.Items)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
}
