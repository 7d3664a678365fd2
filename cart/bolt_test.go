package cart

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

func openTestBolt(t *testing.T) Store {
	st, err := OpenBolt(filepath.Join(t.TempDir(), "livecart.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestBoltStore(t *testing.T) { runStoreSuite(t, openTestBolt) }

// TestBoltGroupSharesCache: calls queued while the writer is busy run in one group
// transaction and share its products; of 50 creations of one product id in one group
// exactly one succeeds, and a hold storm in one group leaves the product's numbers
// exact (each call sees the earlier calls' changes before the group writes them).
func TestBoltGroupSharesCache(t *testing.T) {
	st := openTestBolt(t).(*BoltStore)
	ctx, now := context.Background(), time.Now().UTC()
	sid := uuid.NewString()
	if err := st.CreateStream(ctx, Stream{ID: sid, Title: "t", CreatorID: "c", Status: StreamIdle, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	base, err := st.CreateProduct(ctx, Product{ID: uuid.NewString(), StreamID: sid, SKU: "s", Title: "t", PriceCents: 1, Currency: "EUR", Stock: 30}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Hold the writer until every call below is queued behind it.
	release := make(chan struct{})
	writerBusy := make(chan struct{})
	go st.group(func(*groupTx) error { close(writerBusy); <-release; return nil })
	<-writerBusy
	pid := uuid.NewString()
	var created, held, soldOut atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := st.CreateProduct(ctx, Product{ID: pid, StreamID: sid, SKU: "s", Title: "t", PriceCents: 1, Currency: "EUR", Stock: 1}, 0); err == nil {
				created.Add(1)
			}
		}()
		go func() {
			defer wg.Done()
			_, _, err := st.HoldUnits(ctx, HoldRequest{ID: uuid.NewString(), UserID: "u", ProductID: base.ID, Quantity: 1, ExpiresAt: now.Add(time.Hour)}, now)
			switch {
			case err == nil:
				held.Add(1)
			case errors.Is(err, ErrSoldOut):
				soldOut.Add(1)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // let the 100 calls queue on the writer
	close(release)
	wg.Wait()
	if created.Load() != 1 {
		t.Fatalf("creations of one id that succeeded: got %d, want 1", created.Load())
	}
	p, _ := st.GetProduct(ctx, base.ID)
	if held.Load() != 30 || soldOut.Load() != 20 || p.Stock != 0 || p.Held != 30 {
		t.Fatalf("hold storm on 30 units: got %d held, %d sold out, stock %d held %d; want 30, 20, 0, 30",
			held.Load(), soldOut.Load(), p.Stock, p.Held)
	}
}

// TestBoltStaleKeyReuseForgetsRecord: a checkout that reuses an idempotency key older
// than IdempotencyTTL, not yet swept, and then fails (here: an empty cart) must not
// leave the old key's record behind without its expiry entry: nothing would ever
// forget it (it did: the expiry entry went, the record stayed).
func TestBoltStaleKeyReuseForgetsRecord(t *testing.T) {
	st := openTestBolt(t).(*BoltStore)
	ctx, t0 := context.Background(), time.Now().UTC()
	sid := uuid.NewString()
	if err := st.CreateStream(ctx, Stream{ID: sid, Title: "t", CreatorID: "c", Status: StreamIdle, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	p, err := st.CreateProduct(ctx, Product{ID: uuid.NewString(), StreamID: sid, SKU: "s", Title: "t", PriceCents: 1, Currency: "EUR", Stock: 5}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.HoldUnits(ctx, HoldRequest{ID: uuid.NewString(), UserID: "u", ProductID: p.ID, Quantity: 1, ExpiresAt: t0.Add(time.Hour)}, t0); err != nil {
		t.Fatal(err)
	}
	req := CheckoutRequest{OrderID: uuid.NewString(), UserID: "u", IdempotencyKey: "k", Fingerprint: "f"}
	if _, err := st.Checkout(ctx, req, t0); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(IdempotencyTTL + time.Hour)
	req.OrderID = uuid.NewString()
	if _, err := st.Checkout(ctx, req, later); !errors.Is(err, ErrConflict) {
		t.Fatalf("checkout of an empty cart with a stale key: got %v, want ErrConflict", err)
	}
	if _, _, err := st.ReleaseExpiredHolds(ctx, later, 100); err != nil {
		t.Fatal(err)
	}
	err = st.db.View(func(tx *bolt.Tx) error {
		key := userKey("u", kindIdem, "k")
		return tx.Bucket(bucketIdemExpiry).ForEach(func(k, v []byte) error {
			if bytes.Equal(k[8:], key) {
				t.Errorf("the stale key's record is still there after the sweep: %s", v)
			}
			return nil
		})
	})
	if _, ok := st.idem[st.hasher.sum(userKey("u", kindIdem, "k"))]; ok {
		t.Errorf("the stale key is still in the index after the sweep")
	}
	if err != nil {
		t.Fatal(err)
	}
}
