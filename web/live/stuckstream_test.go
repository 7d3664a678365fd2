package live

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/cart"
)

// stuckBus is a Bus whose publications of one stream never get an answer (that
// stream's Redis node down, say) until their context ends; the others go to Bus.
type stuckBus struct {
	Bus
	stuck   string
	waiting atomic.Int32 // publications of the stuck stream under way
}

func (b *stuckBus) Publish(ctx context.Context, sid, typ string, body []byte) (Record, error) {
	if sid != b.stuck {
		return b.Bus.Publish(ctx, sid, typ, body)
	}
	b.waiting.Add(1)
	defer b.waiting.Add(-1)
	<-ctx.Done()
	return Record{}, errors.New("stuck: no answer")
}

// TestStuckStreamStallsNoOther: one stream's publication is tried for as long as its
// bus does not answer. Meanwhile another stream's events go out at once, viewers of
// both streams join (snapshot), the idle sweep runs, and Close returns promptly; the
// stuck stream's publications end soon after (the one waiting in the queue is tried
// for PublishTryTimeout once Close has given up).
func TestStuckStreamStallsNoOther(t *testing.T) {
	stuck, other := uuid.NewString(), uuid.NewString()
	bus := &stuckBus{Bus: NewMemoryBus(nil, 0), stuck: stuck}
	ts := newTestServer(t, Config{Bus: bus, EmitQueueMax: 4, ViewersInterval: time.Hour})
	ts.watch(t, stuck)
	co := ts.watch(t, other)
	base := runtime.NumGoroutine()
	for i := range 2 { // one tried, one waiting in the queue
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		ts.hub.Emit(ctx, cart.Event{StreamID: stuck, Type: EventAnnounce, Data: AnnounceData{Text: "stuck"}})
		cancel()
		if i == 0 {
			for deadline := time.Now().Add(2 * time.Second); bus.waiting.Load() == 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the stuck stream's publication never began")
				}
			}
		}
	}
	for i := range 5 {
		start := time.Now()
		ts.hub.Emit(context.Background(), cart.Event{StreamID: other, Type: EventAnnounce, Data: AnnounceData{Text: "other"}})
		co.nextOf(t, "announce")
		if took := time.Since(start); took > time.Second {
			t.Fatalf("other stream's event %d after %v", i, took)
		}
	}
	done := make(chan struct{})
	go func() { ts.hub.forgetIdle(); close(done) }()
	if !waitAtMost(done, time.Second) {
		t.Fatal("forgetIdle waits for the stuck stream's publication")
	}
	ts.watch(t, stuck)
	ts.watch(t, other)
	t.Logf("goroutines %d -> %d", base, runtime.NumGoroutine())
	start := time.Now()
	ts.hub.Close()
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Close took %v during the stuck publication", took)
	}
	t.Logf("Close took %v", time.Since(start))
	for deadline := time.Now().Add(20 * time.Second); bus.waiting.Load() > 0 || runtime.NumGoroutine() > base; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("20 s after Close: %d publications of the stuck stream under way, %d goroutines (before: %d)", bus.waiting.Load(), runtime.NumGoroutine(), base)
		}
	}
	t.Logf("all publications ended %v after Close", time.Since(start))
}

// stuckSeenBus is a RedisBus whose publications of one stream (once stuck is set)
// never get an answer until their context ends; its other calls (the stock gate, the
// comparison) answer.
type stuckSeenBus struct {
	*RedisBus
	stuck   atomic.Value // string: the stream
	waiting atomic.Int32
}

func (b *stuckSeenBus) PublishSeen(ctx context.Context, sid, typ string, body []byte, seen []StockValue, onlyNewer bool) (Record, error) {
	if s, _ := b.stuck.Load().(string); s == sid {
		b.waiting.Add(1)
		defer b.waiting.Add(-1)
		<-ctx.Done()
		return Record{}, errors.New("stuck: no answer")
	}
	return b.RedisBus.PublishSeen(ctx, sid, typ, body, seen, onlyNewer)
}

// TestStuckStreamStallsNoRescue: a stream's event is tried for as long as its
// publication gets no answer, its emitter held meanwhile, while the comparison finds a
// stock value of that stream a dying node left stale. The comparison and the overdue
// sweep (one goroutine for every stream) go on: another stream's stale value, left by
// the same death a few seconds later, still reaches its viewer within the usual
// bound. (Before: the sweep waited for the stuck emitter, here until Close; with
// Redis back, ~6 s at most.)
func TestStuckStreamStallsNoRescue(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	rdb, prefix := testRedis(t, "livetest-stuckrescue")
	cleanupPrefix(t, rdb, prefix)
	ctx := context.Background()
	store := openRedisStore(t, rdb, prefix+"-store")
	bus := &stuckSeenBus{RedisBus: NewRedisBus(rdb, prefix, nil, nil)}
	t.Cleanup(func() { bus.RedisBus.Close() })
	ts := newTestServer(t, Config{Bus: bus, Presence: NewRedisPresence(rdb, prefix, "node-a", nil), Stock: store, ViewersInterval: time.Hour})

	stuck, pidStuck := newStreamWithProduct(t, ctx, store)
	other, pidOther := newStreamWithProduct(t, ctx, store)
	vs, vo := ts.watch(t, stuck), ts.watch(t, other)
	saleStuck := showSale(t, ctx, store, ts.hub, stuck, pidStuck, vs)
	saleOther := showSale(t, ctx, store, ts.hub, other, pidOther, vo)
	waitComparison(t, ts.hub)

	bus.stuck.Store(stuck)
	actx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	ts.hub.Emit(actx, cart.Event{StreamID: stuck, Type: EventAnnounce, Data: AnnounceData{Text: "stuck"}})
	cancel()
	for deadline := time.Now().Add(2 * time.Second); bus.waiting.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stuck stream's publication never began")
		}
	}
	lostHold(t, ctx, store, saleStuck)
	time.Sleep(4 * StockRescueAfter) // the comparison finds it (the emitter is held)
	died := lostHold(t, ctx, store, saleOther)
	vo.nextRescuedStock(t, saleOther.ID, "", 8, died, 4*StockRescueAfter)
}
