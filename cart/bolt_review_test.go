package cart

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// TestBoltEndStreamUnreadableProduct: ending a stream one of whose live sales has a
// product whose record cannot be read (the sale's record can) ends the stream and its
// other sales, logs the skipped sale at error level with its product, and leaves it
// live: once the product's record is restored it can be ended, its remaining units back
// to the product. Before, EndStream failed on it (endSale returns the remaining units
// to the product), so the stream could not be ended at all.
func TestBoltEndStreamUnreadableProduct(t *testing.T) {
	f := newHoldFixture(t) // f.sale (100 units, live) is of f.product (1000 put in)
	sid, p2, s2 := f.secondSale(time.Hour)
	var err error
	for _, sale := range []string{f.sale, s2.ID} {
		if _, _, err := f.st.HoldUnits(f.ctx, HoldRequest{ID: uuid.NewString(), UserID: "u", SaleID: sale, Quantity: 1, ExpiresAt: f.now.Add(time.Hour)}, f.now); err != nil {
			t.Fatal(err)
		}
	}
	var good []byte
	if err := f.st.db.Update(func(tx *bolt.Tx) error {
		good = bytes.Clone(tx.Bucket(bucketProducts).Get([]byte(p2.ID)))
		return tx.Bucket(bucketProducts).Put([]byte(p2.ID), []byte("{"))
	}); err != nil {
		t.Fatal(err)
	}
	logs := f.reopenLogged(defaultTuning)

	stream, ended, err := f.st.EndStream(f.ctx, sid, f.now)
	if err != nil {
		t.Fatalf("EndStream with a sale whose product's record cannot be read: %v, want the stream ended", err)
	}
	if stream.Status != StreamEnded || len(ended) != 1 || ended[0].ID != f.sale {
		t.Errorf("EndStream: %+v, %+v; want the stream and f.sale (only) ended", stream, ended)
	}
	if logs.has("ERROR", "embedded store:", "cannot be read", "sale="+s2.ID, "its product "+p2.ID) != 1 {
		t.Errorf("EndStream logged %q; want one error naming sale %s and its product", logs.recs, s2.ID)
	}
	if gs, err := f.st.GetSale(f.ctx, s2.ID); err != nil || gs.Status != SaleActive {
		t.Errorf("s2 after EndStream: %+v, %v; want it left active", gs, err)
	}
	if err := f.st.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketProducts).Put([]byte(p2.ID), good) }); err != nil {
		t.Fatal(err)
	}
	f.reopen(defaultTuning)
	s, prod, changed, err := f.st.StopSale(f.ctx, s2.ID, f.now.Add(time.Minute))
	if err != nil || !changed || s.Returned != 4 || prod.Stock != 5+4 {
		t.Errorf("StopSale of s2 once its product is restored: %+v, %+v, %v, %v; want it ended, 4 returned, stock 9", s, prod, changed, err)
	}
	checkStreamInvariants(t, f.st, sid, map[string]int{f.product: 1000, p2.ID: 10})
	checkHoldIndexMatchesFile(t, f.st, "after the restore")
}

// secondSale adds to the fixture's stream a product p2 of 10 units and an active sale
// s2 of 5 of them (limit 3) ending endsIn from now; it returns the stream's id, p2, s2.
func (f *holdFixture) secondSale(endsIn time.Duration) (string, Product, Sale) {
	f.t.Helper()
	p, err := f.st.GetProduct(f.ctx, f.product)
	if err != nil {
		f.t.Fatal(err)
	}
	p2, err := f.st.CreateProduct(f.ctx, Product{ID: uuid.NewString(), StreamID: p.StreamID, SKU: "s2", Title: "t", PriceCents: 1, Currency: "EUR", Stock: 10}, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	s2, _, err := f.st.CreateSale(f.ctx, Sale{ID: uuid.NewString(), StreamID: p.StreamID, ProductID: p2.ID, PriceCents: 1,
		Quantity: 5, PerUserLimit: 3, StartsAt: f.now.Add(-time.Minute), EndsAt: f.now.Add(endsIn)}, f.now, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return p.StreamID, p2, s2
}

// fileHas says whether any value in the store's file holds v.
func fileHas(t *testing.T, st *BoltStore, v []byte) bool {
	t.Helper()
	found := false
	if err := st.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
			return b.ForEach(func(_, val []byte) error {
				found = found || bytes.Contains(val, v)
				return nil
			})
		})
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// TestBoltOpenKeepsUnreadableOrderLog: open no longer deletes an order_log entry it
// cannot read. One of an unknown format (its value does not split into an order and a
// buyer) is moved, as it is, out of the log (where it would stop the indexing) into
// order_log_unreadable and logged; one whose key is no sequence but whose value names
// an order of that buyer is put back at the log's end, so the buyer's GET /api/orders
// still lists it. Before, open deleted both: the bytes of the first were gone, and the
// second's acknowledged order was missing from its buyer's list.
func TestBoltOpenKeepsUnreadableOrderLog(t *testing.T) {
	noIdle := boltTuning{indexBatch: defaultTuning.indexBatch, indexIdle: time.Hour}
	f := newIndexFixture(t, noIdle)
	alice, bob := f.buy("alice", "k"), f.buy("bob", "k")
	unknown := []byte("\xff\xffv9:some later format")
	if err := f.st.db.Update(func(tx *bolt.Tx) error {
		log := tx.Bucket(bucketOrderLog)
		var bobKey, bobVal []byte
		log.ForEach(func(k, v []byte) error {
			if oid, _, err := splitOrderLog(v); err == nil && string(oid) == bob.ID {
				bobKey, bobVal = bytes.Clone(k), bytes.Clone(v)
			}
			return nil
		})
		if bobKey == nil {
			t.Fatal("bob's order is not in order_log")
		}
		if err := log.Delete(bobKey); err != nil {
			return err
		}
		if err := log.Put([]byte("abc"), bobVal); err != nil { // a key that is no sequence
			return err
		}
		return log.Put([]byte("\x00\x00\x00\x00\x00\x0f\x42\x3f"), unknown)
	}); err != nil {
		t.Fatal(err)
	}
	logs := f.reopenLogged(noIdle)
	if !fileHas(t, f.st, unknown) {
		t.Errorf("the order_log entry of an unknown format is gone from the file after the open; want it kept")
	}
	if logs.has("ERROR", "order_log entry", "order_log_unreadable", "key=00000000000f423f") != 1 {
		t.Errorf("open logged %q; want the entry of an unknown format named, and where it is kept", logs.recs)
	}
	if logs.has("ERROR", "order_log entry", "order="+bob.ID, "buyer=bob") != 1 {
		t.Errorf("open logged %q; want bob's entry with a bad key named", logs.recs)
	}
	f.orders("alice", []string{alice.ID})
	f.orders("bob", []string{bob.ID})
	// Indexing the log (the writer, idle) goes through, and lists each order once.
	f.reopen(boltTuning{indexBatch: defaultTuning.indexBatch, indexIdle: time.Millisecond})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if l, _ := f.counts(); l == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d entries still in order_log 10 s after the reopen", l)
		}
	}
	f.orders("alice", []string{alice.ID})
	f.orders("bob", []string{bob.ID})
	if !fileHas(t, f.st, unknown) {
		t.Errorf("the order_log entry of an unknown format is gone after a second open")
	}
}

// TestBoltOpenUnreadableHoldCountsBuyer: a hold record open cannot read (of an unknown
// format: a field of another type) but whose buyer and sale can still be read from it
// counts toward its buyer's per-user limit: its quantity if that can be read, else the
// limit. Before, such a hold was in no one's count, so its buyer could hold the limit
// again on top of it (alice, limit 3, held 3 and then 1 more). A record of which
// nothing can be read is logged as before (its buyer is unknown).
func TestBoltOpenUnreadableHoldCountsBuyer(t *testing.T) {
	f := newHoldFixture(t) // f.sale: limit 3
	alice, err := f.hold("alice", 3, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := f.hold("bob", 2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	carl, err := f.hold("carl", 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHolds)
		for id, change := range map[string][2]string{
			alice: {`"quantity":3`, `"quantity":"3"`},                   // its quantity unreadable
			bob:   {`"expires_at":"`, `"expires_at":{"later":1},"x":"`}, // its time unreadable
			carl:  {`{`, `not json {`},                                  // nothing readable
		} {
			v := b.Get([]byte(id))
			if !bytes.Contains(v, []byte(change[0])) {
				t.Fatalf("hold record %s has no %s", v, change[0])
			}
			if err := b.Put([]byte(id), bytes.Replace(v, []byte(change[0]), []byte(change[1]), 1)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	logs := f.reopenLogged(defaultTuning)
	for _, c := range []struct {
		user string
		q    int
		want error
	}{
		{"alice", 1, ErrLimitExceeded}, // 3 held (its quantity unknown: counted at the limit)
		{"bob", 2, ErrLimitExceeded},   // 2 held
		{"bob", 1, nil},
		{"carl", 3, nil}, // unknown buyer: not counted (logged)
		{"dora", 3, nil},
	} {
		if _, err := f.hold(c.user, c.q, time.Hour); !errors.Is(err, c.want) && !(c.want == nil && err == nil) {
			t.Errorf("%s holds %d after the open: %v, want %v", c.user, c.q, err, c.want)
		}
	}
	for _, want := range [][]string{
		{"ERROR", "hold record cannot be read", "hold=" + alice, "buyer=alice", "counted at the limit"},
		{"ERROR", "hold record cannot be read", "hold=" + bob, "buyer=bob", "units=2"},
		{"ERROR", "hold record cannot be read", "hold=" + carl, "buyer is unknown"},
	} {
		if logs.has(want...) != 1 {
			t.Errorf("open logged no (or several) %q; records:\n%s", want, strings.Join(logs.recs, "\n"))
		}
	}
	checkHoldIndexMatchesFile(t, f.st, "after the open")
}
