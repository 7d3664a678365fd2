package cart

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// logRecords collects slog records (message and attributes as "k=v").
type logRecords struct {
	mu   sync.Mutex
	recs []string
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}

// has says how many records contain every one of parts.
func (l *logRecords) has(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, r := range l.recs {
		for _, p := range parts {
			if !strings.Contains(r, p) {
				continue next
			}
		}
		n++
	}
	return n
}

// TestBoltOpenRepairs: a file with damaged and dangling entries (crafted with bbolt
// after the store wrote it) opens; each entry is logged at error level by name; what
// would stop the sweeps is taken out (they run without error afterwards); the
// per-user limit still holds (a buyer whose order cannot be read is counted at the
// limit); the invariants of the intact stream hold; a reopen logs only what is still
// unreadable, and removes nothing more.
func TestBoltOpenRepairs(t *testing.T) {
	ctx, now := context.Background(), time.Now().UTC()
	path := filepath.Join(t.TempDir(), "damaged.db")
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	mk := func() (string, string) {
		sid := uuid.NewString()
		if err := st.CreateStream(ctx, Stream{ID: sid, Title: "t", CreatorID: "c", Status: StreamLive, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		p, err := st.CreateProduct(ctx, Product{ID: uuid.NewString(), StreamID: sid, SKU: "s", Title: "t", PriceCents: 1, Currency: "EUR", Stock: 1000}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return sid, p.ID
	}
	sid, pid := mk()
	sid2, pid2 := mk()
	sale := func(sid, pid string) string {
		s, _, err := st.CreateSale(ctx, Sale{ID: uuid.NewString(), StreamID: sid, ProductID: pid, PriceCents: 1,
			Quantity: 100, PerUserLimit: 2, StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour)}, now, 0)
		if err != nil {
			t.Fatal(err)
		}
		return s.ID
	}
	saleA, saleB := sale(sid, pid), sale(sid2, pid2)
	hold := func(user, sale, product string) string {
		id := uuid.NewString()
		if _, _, err := st.HoldUnits(ctx, HoldRequest{ID: id, UserID: user, SaleID: sale, ProductID: product, Quantity: 1, ExpiresAt: now.Add(time.Minute)}, now); err != nil {
			t.Fatal(err)
		}
		return id
	}
	buy := func(user string) string {
		hold(user, saleA, "")
		res, err := st.Checkout(ctx, CheckoutRequest{OrderID: uuid.NewString(), UserID: user, IdempotencyKey: "k"}, now)
		if err != nil {
			t.Fatal(err)
		}
		return res.Order.ID
	}
	aliceHold := hold("alice", saleA, "")
	buy("bob")
	carolOrder := buy("carol")
	daveHold := hold("dave", "", pid)
	frankHold := hold("frank", saleB, "")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	ghost := uuid.NewString()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, e := range []struct {
			b    []byte
			k, v string
		}{
			{bucketLiveSales, ghost, ""},                                     // a live sale without a record
			{bucketSales, saleB, "{"},                                        // a live sale's record unreadable (frank's hold is of it)
			{bucketHolds, daveHold, "{not json"},                             // a hold record unreadable
			{bucketOrders, carolOrder, "garbage"},                            // an order of the live sale's stream unreadable
			{bucketOrderLog, "\x00\x00\x00\x00\x00\x0f\x42\x3f", "\xff\xff"}, // an order_log entry that does not split
			{bucketOrderLog, "abc", "\x01xu"},                                // an order_log key that is no sequence
			{bucketHoldExpiry, "x", ""},                                      // expiry keys without a time
			{bucketIdemExpiry, "y", ""},
			{bucketHoldExpiry, string(timeKey(now, "no-such-hold")), ""}, // an expiry entry without its hold
		} {
			if err := tx.Bucket(e.b).Put([]byte(e.k), []byte(e.v)); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	logs := &logRecords{}
	st, err = OpenBoltLog(path, slog.New(logs))
	if err != nil {
		t.Fatalf("open of the damaged file: %v, want it open", err)
	}
	for _, want := range [][]string{
		{"ERROR", "live sale's record cannot be read", "sale=" + ghost},
		{"ERROR", "live sale's record cannot be read", "sale=" + saleB},
		{"ERROR", "hold sweep no longer releases it", "hold=" + frankHold, "its sale " + saleB},
		{"ERROR", "hold sweep no longer releases it", "hold=" + daveHold},
		{"ERROR", "hold sweep no longer releases it", "hold=no-such-hold"},
		{"ERROR", "hold record cannot be read", "hold=" + daveHold},
		{"ERROR", "order of a stream with a live sale cannot be read", "order=" + carolOrder, "buyer=carol"},
		{"ERROR", "order_log entry cannot be read", "kept as it is in bucket order_log_unreadable", "key=00000000000f423f"},
		{"ERROR", "order_log entry cannot be read", "kept as it is in bucket order_log_unreadable", "key=616263"},
		{"ERROR", "expiry entry without its time", "bucket=hold_expiry"},
		{"ERROR", "expiry entry without its time", "bucket=idem_expiry"},
	} {
		if logs.has(want...) != 1 {
			t.Errorf("open logged no (or several) %q; records:\n%s", want, strings.Join(logs.recs, "\n"))
		}
	}
	// The per-user limit (2): carol's unreadable order counts as the limit, bob's as 1.
	limit := func(user string, want error) {
		t.Helper()
		_, _, err := st.HoldUnits(ctx, HoldRequest{ID: uuid.NewString(), UserID: user, SaleID: saleA, Quantity: 1, ExpiresAt: now.Add(time.Minute)}, now)
		if !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("%s holds a unit of the sale after the open: %v, want %v", user, err, want)
		}
	}
	limit("carol", ErrLimitExceeded)
	limit("bob", nil)
	limit("bob", ErrLimitExceeded)
	limit("alice", nil)
	limit("alice", ErrLimitExceeded)
	if hs, err := st.ListHolds(ctx, "alice", now); err != nil || len(hs) != 2 || hs[0].ID != aliceHold {
		t.Errorf("alice's cart after the open: %v %v, want her hold first of two", hs, err)
	}
	// The sweeps run through (each stopped on one of the removed entries before).
	n, _, err := st.ReleaseExpiredHolds(ctx, now.Add(time.Hour), 100)
	if err != nil || n != 3 {
		t.Errorf("ReleaseExpiredHolds after the open: %d released, %v; want alice's two and bob's one", n, err)
	}
	ups, err := st.AdvanceSales(ctx, now.Add(2*time.Hour))
	if err != nil || len(ups) != 1 || ups[0].Sale.ID != saleA {
		t.Errorf("AdvanceSales after the open: %v, %v; want sale A ended", ups, err)
	}
	checkStreamInvariants(t, st, sid, map[string]int{pid: 1000})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	logs = &logRecords{}
	if st, err = OpenBoltLog(path, slog.New(logs)); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if logs.has("removed") != 0 || logs.has("ERROR", "hold record cannot be read", "hold="+daveHold) != 1 ||
		logs.has("ERROR", "live sale's record cannot be read", "sale="+ghost) != 1 ||
		logs.has("ERROR", "live sale's record cannot be read", "sale="+saleB) != 1 || len(logs.recs) != 3 {
		t.Errorf("the reopen logged %q; want dave's unreadable hold and the two live sales without a readable record only (the ended sale's stream is no longer read)", logs.recs)
	}
}

// TestBoltOpenFailsClearly: a file open cannot use is refused with what is wrong and
// what to do: another process holds it, it is no database, or an earlier layout's
// entry cannot be moved (and then the file is left as it was).
func TestBoltOpenFailsClearly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "held.db")
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenBolt(path)
	st.Close()
	if err == nil || !strings.Contains(err.Error(), "another process holds the file's lock") || !strings.Contains(err.Error(), path) {
		t.Errorf("open of a file another open holds: %v, want it named and why", err)
	}

	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("livecart"), 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBolt(junk); err == nil || !strings.Contains(err.Error(), "not a livecart database") || !strings.Contains(err.Error(), "backup") {
		t.Errorf("open of a file that is no database: %v, want it said, and what to do", err)
	}

	old := filepath.Join(dir, "layout1.db")
	db, err := bolt.Open(old, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucket(layout1UserHolds)
		return b.Put([]byte("no sequence"), []byte("h"))
	})
	db.Close()
	_, err = OpenBolt(old)
	if err == nil || !strings.Contains(err.Error(), "nothing was changed") || !strings.Contains(err.Error(), `"no sequence"`) {
		t.Errorf("open of a layout-1 file with an entry the move cannot read: %v, want the entry named and the file left alone", err)
	}
	db, err = bolt.Open(old, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(layout1UserHolds) == nil || tx.Bucket(bucketOrderLog) != nil {
			t.Errorf("the failed move changed the file")
		}
		return nil
	})
}

// TestBoltLiveSaleFromMigrated: a live_sales entry of a file written before its value
// was kept (empty) gets the sequence of the sale's first order in its stream, so the
// next open reads the stream from there; the counts are the same either way.
func TestBoltLiveSaleFromMigrated(t *testing.T) {
	f := newHoldFixture(t)
	f.buy("early", "k") // a product order, before the sale's first
	if _, err := f.hold("u", 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	res, err := f.st.Checkout(f.ctx, CheckoutRequest{OrderID: uuid.NewString(), UserID: "u", IdempotencyKey: "k"}, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.hold("u", 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	var want []byte
	var seqOfOrder uint64
	f.st.db.View(func(tx *bolt.Tx) error {
		want = bytes.Clone(tx.Bucket(bucketLiveSales).Get([]byte(f.sale)))
		tx.Bucket(bucketStreamOrders).ForEach(func(k, v []byte) error {
			if string(v) == res.Order.ID {
				seqOfOrder, _ = indexSeq(k)
			}
			return nil
		})
		return nil
	})
	if len(want) != 8 || binary.BigEndian.Uint64(want) > seqOfOrder {
		t.Fatalf("live_sales value %x after CreateSale, want a sequence at most the sale's order's %d", want, seqOfOrder)
	}
	before := writerHoldIndex(t, f.st)
	f.st.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketLiveSales).Put([]byte(f.sale), nil) })
	f.reopen(defaultTuning)
	var got []byte
	f.st.db.View(func(tx *bolt.Tx) error {
		got = bytes.Clone(tx.Bucket(bucketLiveSales).Get([]byte(f.sale)))
		return nil
	})
	if len(got) != 8 || binary.BigEndian.Uint64(got) != seqOfOrder {
		t.Errorf("the migrated live_sales value: %x, want the sale's first order's sequence %d", got, seqOfOrder)
	}
	if after := writerHoldIndex(t, f.st); after.units[f.sale]["u"] != 2 || before.units[f.sale]["u"] != 2 {
		t.Errorf("u's units of the sale: %v before, %v after the migration, want 2 (one held, one ordered)", before.units[f.sale], after.units[f.sale])
	}
	checkHoldIndexMatchesFile(t, f.st, "after the migration")
}

// TestBoltOpenKeepsUnreadableLiveSale: open leaves a live sale whose record cannot be
// read in live_sales (the sale sweep and the rebuild skip it), so that once its record
// is restored from a backup, as open's log asks, the sale is live again: the sweep
// ends it (its remaining units go back to the product) and the per-user limit counts
// its buyers' orders. Taking the entry out lost both for good: the restored sale was
// never ended, and a buyer at the limit could buy again.
func TestBoltOpenKeepsUnreadableLiveSale(t *testing.T) {
	f := newHoldFixture(t)
	if _, err := f.hold("u", 3, time.Hour); err != nil { // the limit is 3
		t.Fatal(err)
	}
	if _, err := f.st.Checkout(f.ctx, CheckoutRequest{OrderID: uuid.NewString(), UserID: "u", IdempotencyKey: "k"}, f.now); err != nil {
		t.Fatal(err)
	}
	w, err := f.hold("w", 1, time.Minute) // its expiry entry goes with the sale's record
	if err != nil {
		t.Fatal(err)
	}
	logs := f.reopenLogged(defaultTuning) // an open of the intact file logs nothing (no entry put back)
	if len(logs.recs) != 0 {
		t.Errorf("an open of the intact file logged %q", logs.recs)
	}
	var rec []byte
	put := func(v []byte) {
		t.Helper()
		if err := f.st.db.Update(func(tx *bolt.Tx) error {
			rec = bytes.Clone(tx.Bucket(bucketSales).Get([]byte(f.sale)))
			return tx.Bucket(bucketSales).Put([]byte(f.sale), v)
		}); err != nil {
			t.Fatal(err)
		}
	}
	put([]byte("{")) // damaged
	good := rec
	f.reopen(defaultTuning)
	if _, err := f.st.AdvanceSales(f.ctx, f.now.Add(2*time.Hour)); err != nil {
		t.Errorf("AdvanceSales with a live sale whose record cannot be read: %v, want it to go on", err)
	}
	if _, err := f.hold("v", 1, time.Hour); err == nil {
		t.Errorf("a hold of the sale whose record cannot be read went through")
	}
	put(good) // restored from a backup
	f.reopen(defaultTuning)
	if n, _, err := f.st.ReleaseExpiredHolds(f.ctx, f.now.Add(10*time.Minute), 100); err != nil || n != 1 {
		t.Errorf("ReleaseExpiredHolds after the restore: %d, %v; want w's hold %s released (its expiry entry put back)", n, err, w)
	}
	if _, err := f.hold("u", 1, time.Hour); !errors.Is(err, ErrLimitExceeded) {
		t.Errorf("u (3 bought, limit 3) holds 1 more unit of the restored sale: %v, want limit_exceeded", err)
	}
	ups, err := f.st.AdvanceSales(f.ctx, f.now.Add(2*time.Hour))
	if err != nil || len(ups) != 1 || ups[0].Sale.ID != f.sale || ups[0].Sale.Status != SaleEnded {
		t.Errorf("AdvanceSales past the restored sale's end: %v, %v; want it ended", ups, err)
	}
	checkHoldIndexMatchesFile(t, f.st, "after the restore")
}

// TestBoltOpenUnreadableProduct: a product record that cannot be read stops neither
// sweep. The hold sweep would fail for good on a hold of the product (its units go back
// to it) and the sale sweep on the product's live sale once it is due (its remaining
// units go back to it): open logs and takes out such a hold's expiry entry (its units
// stay held, as for a hold whose sale cannot be read), and the sale sweep skips the sale.
// The other holds and sales go on.
func TestBoltOpenUnreadableProduct(t *testing.T) {
	f := newHoldFixture(t) // f.sale is of f.product
	_, p2, s2 := f.secondSale(30 * time.Minute)
	var err error
	hold := func(user, sale, product string, ttl time.Duration) string {
		t.Helper()
		id := uuid.NewString()
		if _, _, err := f.st.HoldUnits(f.ctx, HoldRequest{ID: id, UserID: user, SaleID: sale, ProductID: product, Quantity: 1, ExpiresAt: f.now.Add(ttl)}, f.now); err != nil {
			t.Fatal(err)
		}
		return id
	}
	erin := hold("erin", "", f.product, time.Minute)                               // a hold of the product itself
	gus := hold("gus", s2.ID, "", 2*time.Minute)                                   // a hold of s2, of p2
	ok := hold("ok", f.sale, "", 3*time.Minute)                                    // a hold of the live sale of the product
	if _, err := f.st.AdvanceSales(f.ctx, f.now.Add(40*time.Minute)); err != nil { // s2 ended, gus's hold still held
		t.Fatal(err)
	}
	if err := f.st.db.Update(func(tx *bolt.Tx) error {
		for _, id := range []string{f.product, p2.ID} {
			if err := tx.Bucket(bucketProducts).Put([]byte(id), []byte("{")); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	logs := f.reopenLogged(defaultTuning)
	for _, want := range [][]string{
		{"ERROR", "hold sweep no longer releases it", "hold=" + erin, "its product " + f.product},
		{"ERROR", "hold sweep no longer releases it", "hold=" + gus, "its sale's product " + p2.ID},
	} {
		if logs.has(want...) != 1 {
			t.Errorf("open logged no (or several) %q; records:\n%s", want, strings.Join(logs.recs, "\n"))
		}
	}
	n, _, err := f.st.ReleaseExpiredHolds(f.ctx, f.now.Add(time.Hour), 100)
	if err != nil || n != 1 {
		t.Errorf("ReleaseExpiredHolds after the open: %d released, %v; want ok's hold (%s)", n, err, ok)
	}
	if _, err := f.st.AdvanceSales(f.ctx, f.now.Add(2*time.Hour)); err != nil {
		t.Errorf("AdvanceSales past the end of a sale whose product cannot be read: %v, want it to go on", err)
	}
}

// TestBoltEndStreamUnreadableSale: ending a stream one of whose sales has a record that
// cannot be read (open keeps it in live_sales) ends the stream and its other sales (their
// remaining units back to their products), logs the skipped sale at error level, and
// leaves it as it is: once its record is restored and the file reopened, it is still
// live and can be ended. Before, EndStream failed on it, so the stream could not be
// ended at all.
func TestBoltEndStreamUnreadableSale(t *testing.T) {
	f := newHoldFixture(t) // f.sale (100 units, live) is of f.product (1000 put in)
	sid, p2, s2 := f.secondSale(time.Hour)
	var err error
	hold := func(user, sale string) {
		t.Helper()
		if _, _, err := f.st.HoldUnits(f.ctx, HoldRequest{ID: uuid.NewString(), UserID: user, SaleID: sale, Quantity: 1, ExpiresAt: f.now.Add(time.Hour)}, f.now); err != nil {
			t.Fatal(err)
		}
	}
	hold("u", f.sale)
	hold("u", s2.ID)
	if _, err := f.st.Checkout(f.ctx, CheckoutRequest{OrderID: uuid.NewString(), UserID: "u", IdempotencyKey: "k"}, f.now); err != nil {
		t.Fatal(err)
	}
	hold("v", s2.ID) // still held when the stream ends
	putIn := map[string]int{f.product: 1000, p2.ID: 10}
	var good []byte
	put := func(v []byte) {
		t.Helper()
		if err := f.st.db.Update(func(tx *bolt.Tx) error {
			if good == nil {
				good = bytes.Clone(tx.Bucket(bucketSales).Get([]byte(f.sale)))
			}
			return tx.Bucket(bucketSales).Put([]byte(f.sale), v)
		}); err != nil {
			t.Fatal(err)
		}
	}
	live := func() bool {
		t.Helper()
		in := false
		if err := f.st.db.View(func(tx *bolt.Tx) error {
			in = tx.Bucket(bucketLiveSales).Get([]byte(f.sale)) != nil
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return in
	}
	put([]byte("{")) // damaged
	logs := f.reopenLogged(defaultTuning)
	logs.mu.Lock()
	logs.recs = nil // open's own records
	logs.mu.Unlock()

	stream, ended, err := f.st.EndStream(f.ctx, sid, f.now)
	if err != nil {
		t.Fatalf("EndStream with a sale whose record cannot be read: %v, want the stream ended", err)
	}
	if stream.Status != StreamEnded || len(ended) != 1 || ended[0].ID != s2.ID || ended[0].Status != SaleEnded {
		t.Errorf("EndStream: %+v, %+v; want the stream and s2 (only) ended", stream, ended)
	}
	if got, err := f.st.GetStream(f.ctx, sid); err != nil || got.Status != StreamEnded {
		t.Errorf("the stream after EndStream: %+v, %v; want ended", got, err)
	}
	if logs.has("ERROR", "embedded store:", "cannot be read", "sale="+f.sale) != 1 {
		t.Errorf("EndStream logged %q; want one error naming sale %s", logs.recs, f.sale)
	}
	gs, err := f.st.GetSale(f.ctx, s2.ID)
	if err != nil {
		t.Fatal(err)
	}
	gp, err := f.st.GetProduct(f.ctx, p2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gs.Status != SaleEnded || gs.Remaining != 0 || gs.Held != 1 || gs.Sold != 1 || gs.Returned != 3 ||
		gs.Remaining+gs.Held+gs.Sold+gs.Returned != gs.Quantity {
		t.Errorf("s2 after EndStream: %+v; want ended, 1 held, 1 sold, 3 returned", gs)
	}
	if gp.Stock != 8 || gp.Stock+gp.Held+gp.Sold+gs.Quantity-gs.Returned != putIn[p2.ID] {
		t.Errorf("p2 after EndStream: %+v; want stock 8 (5 - 5 in the sale + 3 returned), %d put in", gp, putIn[p2.ID])
	}
	if !live() {
		t.Errorf("the unreadable sale %s left live_sales: a restored record would never be ended", f.sale)
	}
	if _, _, err := f.st.EndStream(f.ctx, sid, f.now); err != nil {
		t.Errorf("EndStream again: %v, want unchanged", err)
	}

	put(good) // restored from a backup
	f.reopen(defaultTuning)
	if !live() {
		t.Fatalf("the restored sale %s is not live after the reopen", f.sale)
	}
	s, prod, changed, err := f.st.StopSale(f.ctx, f.sale, f.now.Add(time.Minute))
	if err != nil || !changed || s.Status != SaleEnded || s.Remaining != 0 || s.Returned != 99 || prod.Stock != 900+99 {
		t.Errorf("StopSale of the restored sale: %+v, %+v, %v, %v; want it ended, 99 returned, the product's stock 999", s, prod, changed, err)
	}
	if live() {
		t.Errorf("the restored sale %s is still in live_sales after StopSale", f.sale)
	}
	checkStreamInvariants(t, f.st, sid, putIn)
	checkHoldIndexMatchesFile(t, f.st, "after the restored sale ended")
}
