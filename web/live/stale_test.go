package live

import (
	"context"
	"log/slog"
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
