package live

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/cart"
)

// countingStock is the real store, counting the stale-stock comparisons' reads.
type countingStock struct {
	StockReader
	lists atomic.Int64
}

func (c *countingStock) ListSales(ctx context.Context, sid string) ([]cart.Sale, error) {
	c.lists.Add(1)
	return c.StockReader.ListSales(ctx, sid)
}

// lostHold commits a hold of 2 units of sale s in store without telling any node (the
// node that made it died before its emit): the delivered value is now stale.
func lostHold(t *testing.T, ctx context.Context, store cart.Store, s cart.Sale) time.Time {
	t.Helper()
	now := time.Now()
	if _, _, err := store.HoldUnits(ctx, cart.HoldRequest{ID: uuid.NewString(), UserID: "u", SaleID: s.ID,
		Quantity: 2, ExpiresAt: now.Add(time.Hour)}, now); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// TestStaleCompareOneNodePerSecond: two nodes with viewers of one stream compare its
// store values with the delivered ones once a second between them, not each (the
// store's reads counted on both); once node A is gone, node B does it every second
// and still publishes a value a dying node left stale, within the usual two seconds.
func TestStaleCompareOneNodePerSecond(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	rdb, prefix := testRedis(t, "livetest-staleturn")
	cleanupPrefix(t, rdb, prefix)
	ctx := context.Background()
	store := openRedisStore(t, rdb, prefix+"-store")
	stockA, stockB := &countingStock{StockReader: store}, &countingStock{StockReader: store}
	a, _ := stockNode(t, rdb, prefix, "node-a", Config{Stock: stockA})
	b, _ := stockNode(t, rdb, prefix, "node-b", Config{Stock: stockB})

	sid, pid := newStreamWithProduct(t, ctx, store)
	viewerA, viewerB := a.watch(t, sid), b.watch(t, sid)
	s := showSale(t, ctx, store, a.hub, sid, pid, viewerA, viewerB)

	const window = 4 * time.Second
	a0, b0 := stockA.lists.Load(), stockB.lists.Load()
	time.Sleep(window)
	na, nb := stockA.lists.Load()-a0, stockB.lists.Load()-b0
	t.Logf("comparisons in %v: node A %d, node B %d", window, na, nb)
	// A 4 s window spans at most 5 seconds of Redis's clock: one comparison each.
	if na+nb > 5 || na+nb < 2 {
		t.Fatalf("%d comparisons in %v on two nodes (A %d, B %d), want one a second between them (2..5)", na+nb, window, na, nb)
	}

	// Node A dies (whether it held this second's turn or not).
	a.hub.Close()
	b0 = stockB.lists.Load()
	died := lostHold(t, ctx, store, s)
	viewerB.nextRescuedStock(t, s.ID, "", 8, died, 4*StockRescueAfter)
	b1 := stockB.lists.Load()
	time.Sleep(window)
	if n := stockB.lists.Load() - b1; n < 3 {
		t.Fatalf("node B alone compared %d times in %v (%d before), want every second", n, window, b1-b0)
	}
}

// countingHandler counts the log records with one message.
type countingHandler struct {
	msg string
	mu  sync.Mutex
	n   int
	ids map[string]bool
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != h.msg {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "stream" {
			h.ids[a.Value.String()] = true
		}
		return true
	})
	return nil
}

func (h *countingHandler) count() (records, streams int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n, len(h.ids)
}

// TestStaleCompareGoesOnPastFailingStream: of the streams a node has viewers of, eight
// cannot be read from the store (their sale list is not a list); each second's
// comparison still checks every stream: each failing one is logged every second, and
// the good stream's value left stale by a dying node is published within about two
// seconds. Before, the pass stopped at the first failing stream (one failure logged a
// second, the good stream compared only when it came first).
func TestStaleCompareGoesOnPastFailingStream(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	rdb, prefix := testRedis(t, "livetest-stalefail")
	cleanupPrefix(t, rdb, prefix)
	ctx := context.Background()
	store := openRedisStore(t, rdb, prefix+"-store")
	logs := &countingHandler{msg: "live: stale stock", ids: map[string]bool{}}
	b, _ := stockNode(t, rdb, prefix, "node-b", Config{Stock: store, Logger: slog.New(logs)})

	const bad = 8
	for range bad {
		sid, pid := newStreamWithProduct(t, ctx, store)
		newActiveSale(t, ctx, store, sid, pid)
		keys, err := rdb.Keys(ctx, "*{"+sid+"}:sales").Result()
		if err != nil || len(keys) != 1 {
			t.Fatalf("the stream's sale list: %v, %v", keys, err)
		}
		if err := rdb.Del(ctx, keys[0]).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.Set(ctx, keys[0], "not a list", 0).Err(); err != nil {
			t.Fatal(err)
		}
		b.dial(t, sid, "").nextOf(t, "snapshot")
	}
	sid, pid := newStreamWithProduct(t, ctx, store)
	viewer := b.watch(t, sid)
	s := showSale(t, ctx, store, b.hub, sid, pid, viewer)

	died := lostHold(t, ctx, store, s)
	viewer.nextRescuedStock(t, s.ID, "", 8, died, 4*StockRescueAfter)
	// Every second, every failing stream: 2 × 8 records within about 2 s.
	deadline := time.Now().Add(4 * time.Second)
	for {
		n, streams := logs.count()
		if n >= 2*bad && streams == bad {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d failures of %d streams logged (%v after the hold), want each of the %d failing streams every second",
				n, streams, time.Since(died).Round(time.Millisecond), bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// salesCounter is a StockReader that counts the sales its comparisons read.
type salesCounter struct {
	*cart.RedisStore
	read int
}

func (s *salesCounter) ListSalesExcept(ctx context.Context, sid string, skip []string) ([]cart.Sale, error) {
	sales, err := s.RedisStore.ListSalesExcept(ctx, sid, skip)
	s.read += len(sales)
	return sales, err
}

// TestStaleComparisonReadsOnlyOpenSales: the node-death comparison reads a stream's
// scheduled and active sales and those ended since it last compared them, not every
// sale the stream ever had (it read all of them each second: 4.6 ms/s at 20 sales and
// 100 products). An ended sale whose end was delivered is read no more; one whose end
// event was lost is still found (and rescued) first, then read no more once its end
// is delivered.
func TestStaleComparisonReadsOnlyOpenSales(t *testing.T) {
	rdb, prefix := testRedis(t, "livetest-staleopen")
	cleanupPrefix(t, rdb, prefix)
	ctx := context.Background()
	store := &salesCounter{RedisStore: openRedisStore(t, rdb, prefix+"-store")}
	bus := NewRedisBus(rdb, prefix, nil, nil)
	t.Cleanup(func() { bus.Close() })
	h := NewHub(Config{Bus: bus, Presence: NewRedisPresence(rdb, prefix, "node-a", nil), Stock: store})
	t.Cleanup(func() { h.Close() })
	sid, pid := newStreamWithProduct(t, ctx, store)
	var sales []cart.Sale
	for range 3 {
		sales = append(sales, newActiveSale(t, ctx, store, sid, pid))
	}
	if _, _, _, err := store.StopSale(ctx, sales[0].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	settled := map[string]bool{}
	compare := func() ([]string, int) {
		t.Helper()
		store.read = 0
		keys, _, err := h.staleStock(ctx, sid, settled)
		if err != nil {
			t.Fatal(err)
		}
		return keys, store.read
	}
	if keys, read := compare(); len(keys) != 0 || read != 3 {
		t.Fatalf("first comparison (the baseline): keys %v, %d sales read; want none, 3", keys, read)
	}
	if keys, read := compare(); len(keys) != 0 || read != 2 {
		t.Fatalf("second comparison: keys %v, %d sales read; want none, 2 (the ended one settled)", keys, read)
	}
	// Sale 1 ends; its end event is lost (its node died).
	ended, _, _, err := store.StopSale(ctx, sales[1].ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(StockRescueAfter + 50*time.Millisecond)
	keys, read := compare()
	if !slices.Contains(keys, "sale:"+sales[1].ID) || read != 2 {
		t.Fatalf("after a lost end: keys %v, %d sales read; want sale:%s among them, 2 read", keys, read, sales[1].ID)
	}
	if keys, read := compare(); read != 2 {
		t.Fatalf("while the end is not delivered: keys %v, %d sales read; want 2 read", keys, read)
	}
	// The rescue delivers the end: from then on only the active sale is read.
	body, err := encodeBody(time.Now(), cart.SaleData{Sale: ended})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.PublishSeen(ctx, sid, cart.EventSale, body, stockValues(cart.SaleData{Sale: ended}), true); err != nil {
		t.Fatal(err)
	}
	compare()
	if keys, read := compare(); len(keys) != 0 || read != 1 {
		t.Fatalf("after the end was delivered: keys %v, %d sales read; want none, 1", keys, read)
	}
}
