package live

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livecart/livecart/cart"
)

// blockingStock is a StockReader whose GetProduct waits for release once block is
// set, telling entered when it starts waiting.
type blockingStock struct {
	StockReader
	reads   atomic.Int64 // GetProduct calls
	block   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (s *blockingStock) GetProduct(ctx context.Context, id string) (cart.Product, error) {
	s.reads.Add(1)
	if s.block.Load() {
		select {
		case s.entered <- struct{}{}:
		default:
		}
		<-s.release
	}
	return s.StockReader.GetProduct(ctx, id)
}

// TestEmitterHeldWhileItsRescueRuns: a rescue of the node-death comparison (here a
// product's, its store read hanging) holds its stream's emitter until it is done. The
// idle sweep neither drops that emitter (the stream's next events would go through a
// second one, publishing at once with the rescue, out of order with it) nor waits for
// its lock with the hub's held. (Before: the sweep waited for the rescue's store read
// holding the hub's lock, every stream's emits stalled behind it, then dropped the
// emitter.)
func TestEmitterHeldWhileItsRescueRuns(t *testing.T) {
	ts, stock, release, sid, pid := blockedRescueServer(t, "livetest-rescuehold")
	h := ts.hub

	e := h.emitter(sid)
	stock.block.Store(true)
	e.rescueProducts([]string{pid}, 0)
	h.release(e)
	select {
	case <-stock.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the rescue never read the product")
	}
	swept := make(chan struct{})
	go func() {
		h.forgetIdle()
		close(swept)
	}()
	select {
	case <-swept:
	case <-time.After(time.Second):
		release()
		t.Fatal("the idle sweep waited for a rescue's store read, holding the hub's lock")
	}
	got := h.emitter(sid)
	h.release(got)
	if got != e {
		t.Fatal("the idle sweep dropped the emitter of a rescue under way: the stream got a second one")
	}
}

// TestProductRescueNotRepeatedWhileUnderWay: a product's rescue still under way (its
// store read slow) when the next comparison finds the product differing again (a
// second later; a stream of many products, or a slow store) is not started again: the
// one under way reads the store after that comparison and covers it. (Before: each
// comparison started its own, and the viewers got the product once for each.)
func TestProductRescueNotRepeatedWhileUnderWay(t *testing.T) {
	ts, stock, release, sid, pid := blockedRescueServer(t, "livetest-rescueonce")
	h := ts.hub
	c := ts.dial(t, sid, "")
	c.nextOf(t, "snapshot")

	e := h.emitter(sid)
	stock.block.Store(true)
	e.rescueProducts([]string{pid}, 0)
	select {
	case <-stock.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the rescue never read the product")
	}
	e.rescueProducts([]string{pid}, 0) // the next comparison's
	h.release(e)
	release()
	got := 0
	deadline := time.After(1500 * time.Millisecond)
	for done := false; !done; {
		select {
		case m := <-c.msgs:
			if m.Type == "product" && m.Product.ID == pid {
				got++
			}
		case <-deadline:
			done = true
		}
	}
	if got != 1 {
		t.Fatalf("the viewer got the rescued product %d times, want once", got)
	}
	// One read of the product for its one rescue (it read it twice: publishLocal's
	// hidden check read it again).
	if n := stock.reads.Load(); n != 1 {
		t.Fatalf("the product was read %d times for its rescue, want once", n)
	}
}

// blockedRescueServer is a test server on a Redis bus whose store reads go through a
// blockingStock, and a stream with a product; release (done once, and at the test's
// end) lets blocked reads go on.
func blockedRescueServer(t *testing.T, name string) (ts *testServer, stock *blockingStock, release func(), sid, pid string) {
	rdb, prefix := testRedis(t, name)
	cleanupPrefix(t, rdb, prefix)
	store := openRedisStore(t, rdb, prefix+"-store")
	stock = &blockingStock{StockReader: store, entered: make(chan struct{}, 1), release: make(chan struct{})}
	bus := NewRedisBus(rdb, prefix, nil, nil)
	t.Cleanup(func() { bus.Close() })
	ts = newTestServer(t, Config{Bus: bus, Stock: stock})
	var releaseOnce sync.Once
	release = func() { releaseOnce.Do(func() { close(stock.release) }) }
	t.Cleanup(release)
	sid, pid = newStreamWithProduct(t, context.Background(), store)
	return ts, stock, release, sid, pid
}
