package cart

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestBoltCommitErrorAfterWrite: bbolt reports a failed fdatasync of the meta page it
// has already written, and the transactions after it see that commit all the same
// (the page is in the file's cache; a NoFreelistSync rollback even rebuilds the
// freelist from that meta). The checkout's caller got an error and retries with the
// same key and body: it gets the order that landed (not a new one, not a 4xx), and
// the buyer's listing shows it once, at once.
func TestBoltCommitErrorAfterWrite(t *testing.T) {
	f := newIndexFixture(t, defaultTuning)
	if _, _, err := f.st.HoldUnits(f.ctx, HoldRequest{ID: newID(), UserID: "u", ProductID: f.product, Quantity: 1, ExpiresAt: f.now.Add(time.Hour)}, f.now); err != nil {
		t.Fatal(err)
	}
	var once atomic.Bool
	f.st.commitFault = func() error {
		if once.CompareAndSwap(false, true) {
			return errors.New("fdatasync: input/output error")
		}
		return nil
	}
	req := CheckoutRequest{OrderID: newID(), UserID: "u", IdempotencyKey: "k", Fingerprint: "fp-k"}
	if _, err := f.st.Checkout(f.ctx, req, f.now); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("checkout whose commit reports an error: %v, want ErrUnavailable", err)
	}
	req.OrderID = newID()
	res, err := f.st.Checkout(f.ctx, req, f.now)
	if err != nil || res.Created {
		t.Fatalf("the retry with the same key and body: order %s created %v, %v; want the order that landed, not created", res.Order.ID, res.Created, err)
	}
	f.orders("u", []string{res.Order.ID})
	req.Fingerprint = "other"
	if _, err := f.st.Checkout(f.ctx, req, f.now); !errors.Is(err, ErrConflict) {
		t.Fatalf("the key with another body: %v, want ErrConflict", err)
	}
}
