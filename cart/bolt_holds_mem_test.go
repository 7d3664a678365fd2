package cart

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// TestBoltAbandonedHoldMemory: a hold nobody checks out or removes stays in its buyer's
// cart, listed expired (API.md), so the writer keeps its cart entry in memory for as
// long as it is in the file: a bounded amount a hold, and nothing else once its units
// are back and its sale has ended. n buyers (UUIDs) each hold a unit of a live sale
// and leave: measured on open (cart entry + the buyer's count of the sale), after the
// sweep released the holds (the counts at 0 are dropped), after the stream ended (the
// sale's counts dropped) and on a reopen; the cart of a buyer of the ended stream
// still lists the hold, expired.
func TestBoltAbandonedHoldMemory(t *testing.T) {
	const n = 50_000
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "abandoned.db")
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	sid, pid := uuid.NewString(), uuid.NewString()
	if err := st.CreateStream(ctx, Stream{ID: sid, Title: "t", CreatorID: "c", Status: StreamLive, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateProduct(ctx, Product{ID: pid, StreamID: sid, SKU: "s", Title: "t", PriceCents: 1, Currency: "EUR", Stock: n}, 0); err != nil {
		t.Fatal(err)
	}
	sale, _, err := st.CreateSale(ctx, Sale{ID: uuid.NewString(), StreamID: sid, ProductID: pid, PriceCents: 1,
		Quantity: n, PerUserLimit: 1, StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour)}, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	// n holds as HoldUnits writes them (faster than n calls), expired a second ago.
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	users := make([]string, n)
	exp := now.Add(-time.Second)
	err = db.Update(func(tx *bolt.Tx) error {
		hb := tx.Bucket(bucketHolds)
		for i := range users {
			users[i] = uuid.NewString()
			seq, err := hb.NextSequence()
			if err != nil {
				return err
			}
			h := boltHold{Hold: Hold{ID: newID(), StreamID: sid, ProductID: pid, SaleID: sale.ID, Quantity: 1, UnitPriceCents: 1, Currency: "EUR", ExpiresAt: exp},
				User: users[i], CartKey: string(appendSeqHex(userKey(users[i], kindCart, ""), seq))}
			if err := putJSON(hb, h.ID, h); err != nil {
				return err
			}
			if err := tx.Bucket(bucketHoldExpiry).Put(timeKey(exp, h.ID), nil); err != nil {
				return err
			}
		}
		sale.Remaining, sale.Held = 0, n
		return putJSON(tx.Bucket(bucketSales), sale.ID, sale)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	heap := func() int64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	perHold := func(base int64) float64 { return float64(heap()-base) / n }
	base := heap()
	if st, err = OpenBolt(path); err != nil {
		t.Fatal(err)
	}
	held := perHold(base)
	units := func() int {
		c := 0
		st.group(func(*groupTx) error {
			for _, us := range st.units {
				c += len(us)
			}
			return nil
		})
		return c
	}
	if u := units(); u != n {
		t.Fatalf("%d buyers counted in the sale after the open, want %d", u, n)
	}
	for released := 0; released < n; {
		k, _, err := st.ReleaseExpiredHolds(ctx, now, 5000)
		if err != nil || k == 0 {
			t.Fatalf("sweep: %d released, %v (%d of %d so far)", k, err, released, n)
		}
		released += k
	}
	if u := units(); u != 0 {
		t.Errorf("%d buyers still counted in the sale once every hold is released, want 0", u)
	}
	swept := perHold(base)
	if _, _, err := st.EndStream(ctx, sid, now); err != nil {
		t.Fatal(err)
	}
	ended := perHold(base)
	st.group(func(*groupTx) error {
		if len(st.units) != 0 || len(st.carts) != n {
			t.Errorf("after the stream's end: %d sales counted, %d carts; want 0 and %d", len(st.units), len(st.carts), n)
		}
		return nil
	})
	hs, err := st.ListHolds(ctx, users[n/2], now)
	if err != nil || len(hs) != 1 || !hs[0].Expired || hs[0].StreamID != sid {
		t.Errorf("the cart of a buyer of the ended stream: %+v %v, want the hold listed, expired", hs, err)
	}
	st.Close()
	st = nil
	base = heap()
	if st, err = OpenBolt(path); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reopened := perHold(base)
	t.Logf("bytes an abandoned hold (UUID buyer and hold ids): %.0f held on open (cart entry + count), %.0f released, %.0f the stream ended, %.0f on reopen", held, swept, ended, reopened)
	for what, b := range map[string]float64{"on open": held, "released": swept, "ended": ended, "reopened": reopened} {
		if b > 400 {
			t.Errorf("%s: %.0f bytes an abandoned hold, want at most 400", what, b)
		}
	}
	if ended > held || reopened > held {
		t.Errorf("an ended stream's abandoned hold takes more than a live one: %.0f ended, %.0f reopened, %.0f live", ended, reopened, held)
	}
}
