package live

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/livecart/livecart/cart"
)

// stockNode is one node on the shared Redis under prefix: its own bus (closed at the
// end), its presence as name, cfg's stock reader and the rest, and ViewersInterval an
// hour (no viewers frames in between).
func stockNode(t *testing.T, rdb *redis.Client, prefix, name string, cfg Config) (*testServer, *RedisBus) {
	t.Helper()
	bus := NewRedisBus(rdb, prefix, nil, nil)
	t.Cleanup(func() { bus.Close() })
	cfg.Bus, cfg.Presence, cfg.ViewersInterval = bus, NewRedisPresence(rdb, prefix, name, nil), time.Hour
	return newTestServer(t, cfg), bus
}

// watch is a viewer of stream sid on ts, past its snapshot.
func (ts *testServer) watch(t *testing.T, sid string) *client {
	t.Helper()
	c := ts.dial(t, sid, "")
	c.nextOf(t, "snapshot")
	return c
}

// showSale starts a sale of pid in store and emits its sale event through h; each
// viewer has it.
func showSale(t *testing.T, ctx context.Context, store cart.Store, h *Hub, sid, pid string, viewers ...*client) cart.Sale {
	t.Helper()
	s := newActiveSale(t, ctx, store, sid, pid)
	h.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventSale, Data: cart.SaleData{Sale: s}})
	for _, v := range viewers {
		v.nextOf(t, "sale")
	}
	return s
}

// nextRescuedStock fails unless the viewer's next stock event carries the store's value
// that node A's death left unpublished, remaining left of sale (or, with sale "", of
// product's own stock), and came within limit after died; it logs how long it took.
func (c *client) nextRescuedStock(t *testing.T, sale, product string, remaining int, died time.Time, limit time.Duration) {
	t.Helper()
	m := c.nextOf(t, "stock")
	if sale != "" && (m.SaleID != sale || m.Remain != remaining) {
		t.Fatalf("stock event %+v, want sale %s with the store's %d left", m, sale, remaining)
	}
	if sale == "" && (m.SaleID != "" || m.ProductID != product || m.Remain != remaining) {
		t.Fatalf("stock event %+v, want product %s's own stock %d", m, product, remaining)
	}
	if took := m.at.Sub(died); took > limit {
		t.Fatalf("the value came %v after node A died, want within %v", took, limit)
	}
	t.Logf("the value came %v after node A died", m.at.Sub(died))
}

// noOverdue fails if the stream's gate still lists a change as overdue (when: the
// moment checked, for the message).
func noOverdue(t *testing.T, b *RedisBus, sid, when string) {
	t.Helper()
	if n, err := b.rdb.ZCard(context.Background(), b.key(sid, "stockdue")).Result(); err != nil || n != 0 {
		t.Fatalf("overdue keys %s: got %d (%v), want 0", when, n, err)
	}
}

// noStockWithin fails if any frame the viewer gets within d is a stock event (which:
// "a second", "another"; want: what the test wants instead).
func (c *client) noStockWithin(t *testing.T, d time.Duration, which, want string) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-c.msgs:
			if m.Type == "stock" {
				t.Fatalf("%s stock event %+v, want %s", which, m, want)
			}
		case <-deadline:
			return
		}
	}
}

// TestStockGateTurns: the Redis stock gate gives one node the turn per interval,
// counts changes as versions, drops a value older than one already published, and
// reports changes covered once a value read after them is out.
func TestStockGateTurns(t *testing.T) {
	rdb, prefix := testRedis(t, "livetest-stockgate")
	cleanupPrefix(t, rdb, prefix)
	b := NewRedisBus(rdb, prefix, nil, nil)
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	sid, key := uuid.NewString(), "stock:"+uuid.NewString()
	const interval = 300 * time.Millisecond

	turn := func(count bool, need int64) StockTurn {
		t.Helper()
		tr, err := b.StockTurn(ctx, sid, key, count, need, interval)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	publish := func(ver int64, want bool) {
		t.Helper()
		_, ok, err := b.PublishStock(ctx, sid, key, ver, interval, "stock", []byte(`"ts":"x","remaining":1}`), 1)
		if err != nil || ok != want {
			t.Fatalf("PublishStock(version %d): got ok %v err %v, want ok %v", ver, ok, err, want)
		}
	}

	// Node A counts a change and takes the gate; node B's change meanwhile waits.
	a := turn(true, 0)
	if !a.Take || a.Need != 1 || a.Version != 1 {
		t.Fatalf("first change: got %+v, want the turn as version 1", a)
	}
	bt := turn(true, 0)
	if bt.Take || bt.Covered || bt.Need != 2 || bt.Wait <= 0 || bt.Wait > interval {
		t.Fatalf("second change while the gate is held: got %+v, want to wait ≤ %v with need 2", bt, interval)
	}
	publish(1, true)
	publish(1, false) // the same version again: dropped
	// Publishing held the gate again for an interval.
	if w := turn(false, 2); w.Take || w.Wait <= 0 {
		t.Fatalf("right after a publication: got %+v, want to wait", w)
	}
	time.Sleep(interval + 50*time.Millisecond)
	bt = turn(false, 2)
	if !bt.Take || bt.Version != 2 {
		t.Fatalf("after the interval: got %+v, want the turn as version 2", bt)
	}
	publish(2, true)
	publish(1, false) // a slow publisher's older value after a newer one: dropped
	if c := turn(false, 2); !c.Covered {
		t.Fatalf("after version 2 is out: got %+v, want covered", c)
	}
	recs, ok, err := b.Since(ctx, sid, 0, 2)
	if err != nil || !ok || len(recs) != 2 {
		t.Fatalf("history: got %d records ok %v err %v, want the 2 published", len(recs), ok, err)
	}
}

// TestStockTurnWithoutStoreReadPublishesNothing: node A's store cannot be read (its
// Redis is down) when it takes the gate with node B's newer change already counted.
// A value A did not read after that change must not cover it: viewers end with the
// store's final value, every round.
func TestStockTurnWithoutStoreReadPublishesNothing(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	rdb, prefix := testRedis(t, "livetest-stockread")
	cleanupPrefix(t, rdb, prefix)
	ctx := context.Background()
	store := openRedisStore(t, rdb, prefix+"-store")
	// Nothing listens on this port: every read of A's store fails at once.
	down, err := cart.OpenRedis(ctx, "redis://127.0.0.1:19701/0", cart.RedisOptions{Prefix: prefix + "-store"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { down.Close() })

	const interval = 200 * time.Millisecond
	a, _ := stockNode(t, rdb, prefix, "node-a", Config{Stock: down, CoalesceInterval: interval})
	b, _ := stockNode(t, rdb, prefix, "node-b", Config{Stock: store, CoalesceInterval: interval})

	sid, pid := newStreamWithProduct(t, ctx, store)
	viewer := b.watch(t, sid)

	hold := func(sale string) int {
		t.Helper()
		_, ch, err := store.HoldUnits(ctx, cart.HoldRequest{ID: uuid.NewString(), UserID: uuid.NewString(),
			SaleID: sale, Quantity: 1, ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return ch.Sales[0].Remaining
	}
	emit := func(h *Hub, sale string, remaining int) {
		h.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventStock,
			Data: cart.StockData{SaleID: sale, ProductID: pid, Remaining: remaining}})
	}
	for round := range 8 {
		s := newActiveSale(t, ctx, store, sid, pid)
		// B publishes first (9 left): the gate is held for an interval. Meanwhile A
		// sells one (its event says 8), then B another (7): both wait for the gate.
		emit(b.hub, s.ID, hold(s.ID))
		// The stale-stock rescue (once a second, one node) may publish the product's
		// own stock first: the sale's creation moved it and nothing here emitted that.
		m := viewer.nextOf(t, "stock")
		for m.SaleID == "" && m.ProductID == pid {
			m = viewer.nextOf(t, "stock")
		}
		if m.SaleID != s.ID || m.Remain != 9 {
			t.Fatalf("round %d: first stock event %+v, want sale %s with 9 left", round, m, s.ID)
		}
		emit(a.hub, s.ID, hold(s.ID))
		emit(b.hub, s.ID, hold(s.ID))
		last := -1
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
			select {
			case m := <-viewer.msgs:
				if m.Type == "stock" && m.SaleID == s.ID {
					last = m.Remain
				}
			case <-time.After(100 * time.Millisecond):
			}
			if last == 7 {
				break
			}
		}
		if last != 7 {
			t.Fatalf("round %d: the last stock event says %d left, want the store's final 7", round, last)
		}
	}
}

// TestStockGateTurnCoversNeedAfterLostCount: Redis lost the last counted change (a
// restart that kept only what was written to disk a moment before) while a node still
// needs it published. The turn that node takes must be published as a version that
// covers it, not as the lost count's predecessor, which is dropped as already out.
func TestStockGateTurnCoversNeedAfterLostCount(t *testing.T) {
	rdb, prefix := testRedis(t, "livetest-stocklost")
	cleanupPrefix(t, rdb, prefix)
	b := NewRedisBus(rdb, prefix, nil, nil)
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	sid, key := uuid.NewString(), "stock:"+uuid.NewString()
	const interval = 200 * time.Millisecond

	first, err := b.StockTurn(ctx, sid, key, true, 0, interval)
	if err != nil || !first.Take {
		t.Fatalf("first change: got %+v, %v, want the turn", first, err)
	}
	if _, ok, err := b.PublishStock(ctx, sid, key, first.Version, interval, "stock", []byte(`"ts":"x","remaining":9}`), 9); !ok || err != nil {
		t.Fatalf("publish version %d: ok %v err %v", first.Version, ok, err)
	}
	second, err := b.StockTurn(ctx, sid, key, true, 0, interval)
	if err != nil || second.Take || second.Need != 2 {
		t.Fatalf("second change: got %+v, %v, want to wait with need 2", second, err)
	}
	// Redis comes back without the second count.
	if err := rdb.HSet(ctx, b.key(sid, "stockver:"+key), "v", 1).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(interval + 50*time.Millisecond)
	turn, err := b.StockTurn(ctx, sid, key, false, second.Need, interval)
	if err != nil || !turn.Take {
		t.Fatalf("after the gate: got %+v, %v, want the turn", turn, err)
	}
	if turn.Version < second.Need {
		t.Fatalf("turn as version %d, want at least the needed %d", turn.Version, second.Need)
	}
	if _, ok, err := b.PublishStock(ctx, sid, key, turn.Version, interval, "stock", []byte(`"ts":"x","remaining":8}`), 8); !ok || err != nil {
		t.Fatalf("publish version %d: ok %v err %v, want published", turn.Version, ok, err)
	}
	if c, err := b.StockTurn(ctx, sid, key, false, second.Need, interval); err != nil || !c.Covered {
		t.Fatalf("after the publication: got %+v, %v, want covered", c, err)
	}
}

// TestOverdueStockPublishedByAnotherNode: node A counts a sale's change at the gate,
// takes the turn and dies before publishing (what its StockTurn left in Redis is all
// that remains of it). Node B, with a viewer of the stream, publishes the store's value
// within StockRescueAfter and a sweep, once, and the key is overdue no more.
func TestOverdueStockPublishedByAnotherNode(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	rdb, prefix := testRedis(t, "livetest-stockdue")
	cleanupPrefix(t, rdb, prefix)
	ctx := context.Background()
	store := openRedisStore(t, rdb, prefix+"-store")
	b, bus := stockNode(t, rdb, prefix, "node-b", Config{Stock: store})

	sid, pid := newStreamWithProduct(t, ctx, store)
	s := newActiveSale(t, ctx, store, sid, pid)
	now := time.Now()
	viewer := b.watch(t, sid)

	// Node A: a hold, counted at the gate, the turn taken; then A is gone.
	if _, _, err := store.HoldUnits(ctx, cart.HoldRequest{ID: uuid.NewString(), UserID: "u", SaleID: s.ID,
		Quantity: 3, ExpiresAt: now.Add(time.Hour)}, now); err != nil {
		t.Fatal(err)
	}
	a := NewRedisBus(rdb, prefix, nil, nil)
	key := "stock:" + s.ID
	turn, err := a.StockTurn(ctx, sid, key, true, 0, 100*time.Millisecond)
	a.Close()
	if err != nil || !turn.Take {
		t.Fatalf("node A's change: got %+v, %v, want the turn", turn, err)
	}
	died := time.Now()

	// Overdue after StockRescueAfter, found by a sweep (every StockRescueAfter/2):
	// within 1.5 s, and some slack for a loaded machine.
	viewer.nextRescuedStock(t, s.ID, "", 7, died, 2*StockRescueAfter+500*time.Millisecond)
	viewer.noStockWithin(t, 2*StockRescueAfter, "a second", "the change published once")
	noOverdue(t, bus, sid, "after the rescue")
}

// TestUncountedStockChangePublished: node A holds a unit of a quiet sale and dies
// between the store's commit and counting the change at the stock gate (nothing of it
// reached the gate or the bus). Node B, with a viewer of the stream, publishes the
// store's value within about two seconds (it compares the store with the value last
// delivered to the viewers), once.
func TestUncountedStockChangePublished(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	rdb, prefix := testRedis(t, "livetest-stockseen")
	cleanupPrefix(t, rdb, prefix)
	ctx := context.Background()
	store := openRedisStore(t, rdb, prefix+"-store")
	b, _ := stockNode(t, rdb, prefix, "node-b", Config{Stock: store})

	sid, pid := newStreamWithProduct(t, ctx, store)
	viewer := b.watch(t, sid)
	s := showSale(t, ctx, store, b.hub, sid, pid, viewer)

	// Node A: the hold committed; A died before its emit reached the gate.
	now := time.Now()
	if _, _, err := store.HoldUnits(ctx, cart.HoldRequest{ID: uuid.NewString(), UserID: "u", SaleID: s.ID,
		Quantity: 2, ExpiresAt: now.Add(time.Hour)}, now); err != nil {
		t.Fatal(err)
	}
	died := time.Now()
	// Compared every StockRescueAfter once not published for StockRescueAfter: within
	// about 2 s, and slack for a loaded machine.
	viewer.nextRescuedStock(t, s.ID, "", 8, died, 4*StockRescueAfter)
	viewer.noStockWithin(t, 3*StockRescueAfter, "a second", "the change published once")
}

// TestLostProductEventStockPublished: a product event carried a product's stock to the
// viewers; then node A took units of it for a sale and died with its product event
// held back (coalesced), so nobody published the new stock. Node B's viewer gets the
// store's stock of the product (a stock event without sale_id) within about two
// seconds. A hidden product's stock is not published.
func TestLostProductEventStockPublished(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	rdb, prefix := testRedis(t, "livetest-prodseen")
	cleanupPrefix(t, rdb, prefix)
	ctx := context.Background()
	store := openRedisStore(t, rdb, prefix+"-store")
	b, _ := stockNode(t, rdb, prefix, "node-b", Config{Stock: store})

	sid, pid := newStreamWithProduct(t, ctx, store)
	hiddenID := uuid.NewString()
	if _, err := store.CreateProduct(ctx, cart.Product{ID: hiddenID, StreamID: sid, SKU: "H", Title: "H",
		PriceCents: 100, Currency: "EUR", Stock: 50}, 0); err != nil {
		t.Fatal(err)
	}
	viewer := b.watch(t, sid)
	for _, id := range []string{pid, hiddenID} {
		p, err := store.GetProduct(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		b.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventProduct, Data: cart.ProductData{Product: p}})
		viewer.nextOf(t, "product")
	}
	// Node A: sales of both products committed (50 → 40, then hidden; 1000 → 990);
	// their product events were lost with A.
	newActiveSale(t, ctx, store, sid, hiddenID)
	if _, _, _, err := store.SetProductHidden(ctx, hiddenID, true); err != nil {
		t.Fatal(err)
	}
	newActiveSale(t, ctx, store, sid, pid)
	died := time.Now()
	viewer.nextRescuedStock(t, "", pid, 990, died, 4*StockRescueAfter)
	viewer.noStockWithin(t, 3*StockRescueAfter, "another", "none (the hidden product's stock is not published)")
}

// TestLostSaleEventRescued: a sale's viewers were told it is active; node A stopped it
// in the store and died before publishing the sale event. Node B, with a viewer of the
// stream, publishes the store's sale (ended, 0 remaining) within about two seconds,
// once. A sale event read from the store before a newer one went out is dropped,
// not published after it.
func TestLostSaleEventRescued(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	rdb, prefix := testRedis(t, "livetest-saleseen")
	cleanupPrefix(t, rdb, prefix)
	ctx := context.Background()
	store := openRedisStore(t, rdb, prefix+"-store")
	b, bus := stockNode(t, rdb, prefix, "node-b", Config{Stock: store})

	sid, pid := newStreamWithProduct(t, ctx, store)
	viewer := b.watch(t, sid)
	s := showSale(t, ctx, store, b.hub, sid, pid, viewer)

	// Node A: the sale stopped in the store; its events were lost with A.
	if _, _, changed, err := store.StopSale(ctx, s.ID, time.Now()); err != nil || !changed {
		t.Fatalf("stop sale: changed %v, %v", changed, err)
	}
	died := time.Now()
	m := viewer.nextOf(t, "sale")
	if m.Sale.ID != s.ID || m.Sale.Status != cart.SaleEnded {
		t.Fatalf("sale event %+v, want sale %s ended", m.Sale, s.ID)
	}
	if took := m.at.Sub(died); took > 4*StockRescueAfter {
		t.Fatalf("the sale event came %v after node A died, want within %v", took, 4*StockRescueAfter)
	}
	t.Logf("the sale event came %v after node A died", m.at.Sub(died))
	stock := -1
	for deadline := time.After(3 * StockRescueAfter); ; {
		select {
		case m := <-viewer.msgs:
			switch {
			case m.Type == "sale":
				t.Fatalf("a second sale event %+v, want one", m.Sale)
			case m.Type == "stock" && m.SaleID == s.ID:
				stock = m.Remain
			}
			continue
		case <-deadline:
		}
		break
	}
	if stock > 0 {
		t.Fatalf("last stock event of the sale says %d, want 0 (or none: the sale event says 0)", stock)
	}

	// An older reading of the sale (active) after the ended one is out: dropped.
	old := s // active, as read before the stop
	body, err := encodeBody(time.Now(), cart.SaleData{Sale: old})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := bus.PublishSeen(ctx, sid, cart.EventSale, body, stockValues(cart.SaleData{Sale: old}), true)
	if err != nil || rec.Seq != 0 {
		t.Fatalf("publishing an older sale status: got seq %d, %v, want it dropped", rec.Seq, err)
	}
	select {
	case m := <-viewer.msgs:
		if m.Type == "sale" {
			t.Fatalf("the older sale event reached the viewer: %+v", m.Sale)
		}
	case <-time.After(300 * time.Millisecond):
	}
}

// TestLateSaleEventNeverUndoesEnd: a node read a sale as started (the sweep's commit)
// and publishes that event late, after another node stopped the sale and published it
// ended (both are the normal path, no node died). The viewers never see the sale go
// back from ended to active: the late event is dropped. One node on the memory bus
// (the sweep and a stop interleave on it) and two nodes on Redis.
func TestLateSaleEventNeverUndoesEnd(t *testing.T) {
	check := func(t *testing.T, pub, other *Hub, viewer *client, sid string) {
		ctx := context.Background()
		sale := cart.Sale{ID: uuid.NewString(), StreamID: sid, ProductID: uuid.NewString(),
			Quantity: 10, Remaining: 10, Status: cart.SaleScheduled}
		pub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventSale, Data: cart.SaleData{Sale: sale}})
		if m := viewer.nextOf(t, "sale"); m.Sale.Status != cart.SaleScheduled {
			t.Fatalf("got %+v, want the scheduled sale", m.Sale)
		}
		started := sale
		started.Status = cart.SaleActive
		ended := sale
		ended.Status, ended.Remaining = cart.SaleEnded, 0
		other.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventSale, Data: cart.SaleData{Sale: ended}})
		pub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventSale, Data: cart.SaleData{Sale: started}}) // late
		announce(pub, sid, "fence")
		var got []string
		for {
			m := viewer.next(t)
			if m.Type == EventAnnounce {
				break
			}
			if m.Type == "sale" {
				got = append(got, m.Sale.Status)
			}
		}
		if len(got) != 1 || got[0] != cart.SaleEnded {
			t.Fatalf("sale events after the scheduled one: %v, want [ended] (never back to active)", got)
		}
	}
	t.Run("memory", func(t *testing.T) {
		ts := newTestServer(t, Config{ViewersInterval: time.Hour})
		sid := uuid.NewString()
		viewer := ts.dial(t, sid, "")
		viewer.nextOf(t, "snapshot")
		check(t, ts.hub, ts.hub, viewer, sid)
	})
	t.Run("redis", func(t *testing.T) {
		rdb, prefix := testRedis(t, "livetest-latesale")
		cleanupPrefix(t, rdb, prefix)
		ctx := context.Background()
		store := openRedisStore(t, rdb, prefix+"-store")
		a, _ := stockNode(t, rdb, prefix, "node-a", Config{Stock: store})
		b, _ := stockNode(t, rdb, prefix, "node-b", Config{Stock: store})
		sid, _ := newStreamWithProduct(t, ctx, store)
		viewer := b.watch(t, sid)
		check(t, a.hub, b.hub, viewer, sid)
	})
}

// TestStockReadBeforeSaleEndDropped: node C takes the stock gate's turn of an active
// sale and reads 7 left; meanwhile the sale ends (by time or a stop) and its ended
// event (0 left) goes out from another node; then C publishes its reading. The viewers
// never see the ended sale's stock go back up (0, then 7): C's value is dropped, and
// the final value still goes out.
func TestStockReadBeforeSaleEndDropped(t *testing.T) {
	rdb, prefix := testRedis(t, "livetest-stockend")
	cleanupPrefix(t, rdb, prefix)
	b := NewRedisBus(rdb, prefix, nil, nil)
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	sid := uuid.NewString()
	sale := cart.Sale{ID: uuid.NewString(), StreamID: sid, ProductID: uuid.NewString(), Quantity: 10,
		Remaining: 10, Status: cart.SaleActive}
	key := "stock:" + sale.ID
	const interval = 100 * time.Millisecond
	publishSale := func(s cart.Sale) {
		t.Helper()
		data := cart.SaleData{Sale: s}
		body, err := encodeBody(time.Now(), data)
		if err != nil {
			t.Fatal(err)
		}
		if rec, err := b.PublishSeen(ctx, sid, cart.EventSale, body, stockValues(data), false); err != nil || rec.Seq == 0 {
			t.Fatalf("sale event (%s): seq %d, %v", s.Status, rec.Seq, err)
		}
	}
	publishSale(sale)

	turn, err := b.StockTurn(ctx, sid, key, true, 0, interval)
	if err != nil || !turn.Take {
		t.Fatalf("node C's change: %+v, %v, want the turn", turn, err)
	}
	// C reads 7 left here; the sale ends and its event goes out first.
	ended := sale
	ended.Status, ended.Remaining = cart.SaleEnded, 0
	publishSale(ended)
	_, ok, err := b.PublishStock(ctx, sid, key, turn.Version, interval, cart.EventStock,
		[]byte(`"ts":"x","sale_id":"`+sale.ID+`","remaining":7}`), 7)
	if err != nil || ok {
		t.Fatalf("C's reading from before the end: published %v (%v), want it dropped", ok, err)
	}
	// The ended sale's final value (publishFinalStock) still goes out.
	final, err := b.StockTurn(ctx, sid, key, true, 0, interval)
	if err != nil {
		t.Fatal(err)
	}
	ver := final.Need
	if final.Take {
		ver = final.Version
	}
	if _, ok, err := b.PublishStock(ctx, sid, key, ver, interval, cart.EventStock,
		[]byte(`"ts":"x","sale_id":"`+sale.ID+`","remaining":0}`), 0); err != nil || !ok {
		t.Fatalf("the final 0: published %v (%v), want it out", ok, err)
	}
	noOverdue(t, b, sid, "")
}

// TestHiddenProductStockNotPublished: a product is hidden while a viewer's hold of its
// units is open; the hold is removed (its units go back) and the stock event goes
// through the gate. The viewers, told the product is hidden, get no stock event of it:
// its stock is nobody's business until it is shown again (and the gate's version is
// still covered, so no node takes it for overdue).
func TestHiddenProductStockNotPublished(t *testing.T) {
	rdb, prefix := testRedis(t, "livetest-hiddenstock")
	cleanupPrefix(t, rdb, prefix)
	ctx := context.Background()
	store := openRedisStore(t, rdb, prefix+"-store")
	b, bus := stockNode(t, rdb, prefix, "node-b", Config{Stock: store})

	sid, pid := newStreamWithProduct(t, ctx, store)
	now := time.Now()
	hold, _, err := store.HoldUnits(ctx, cart.HoldRequest{ID: uuid.NewString(), UserID: "u", ProductID: pid,
		Quantity: 5, ExpiresAt: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	viewer := b.watch(t, sid)
	p, _, _, err := store.SetProductHidden(ctx, pid, true)
	if err != nil {
		t.Fatal(err)
	}
	b.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventProduct, Data: cart.ProductData{Product: p, Toggled: true}})
	viewer.nextOf(t, "product")

	ch, err := store.RemoveHold(ctx, "u", hold.ID, time.Now())
	if err != nil || len(ch.Products) != 1 {
		t.Fatalf("remove hold: %+v, %v", ch, err)
	}
	b.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventStock,
		Data: cart.StockData{ProductID: pid, Remaining: ch.Products[0].Stock}})
	// Once the gate's turn for it is over (published or not), a fence.
	key := "stock:product:" + pid
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, _ := rdb.HGet(ctx, bus.key(sid, "stockver:"+key), "p").Int()
		if p >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gate's turn for the hidden product's stock never ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	announce(b.hub, sid, "fence")
	for {
		m := viewer.next(t)
		if m.Type == EventAnnounce {
			break
		}
		if m.Type == "stock" {
			t.Fatalf("stock event %+v of the hidden product reached the viewer", m)
		}
	}
	noOverdue(t, bus, sid, "")
}

// pinRecordWait is how long the test waits for a pin key's record to be
// StockRescueAfter old: publish.lua stamps a pin key a millisecond or two ahead of
// Redis's clock when records follow each other within one (later than the record's
// time), so exactly StockRescueAfter fell short without the race detector's slowness.
const pinRecordWait = StockRescueAfter + 20*time.Millisecond

// TestRescuedPinNeverUndoesNewer: the viewers were told a product is pinned and the
// store says it is not (an unpin lost with its node): the comparison returns its pin
// key. Should the unpin come late and another node pin it again, both published
// before the rescue publishes the unpin it read, the rescued unpin is dropped, not
// published after the newer pin; with nothing in between, it is published. A pin of
// a product whose pin is delivered is dropped (a repeat) and a rescue stamped before
// it is dropped as after a pin. A stream's first comparison takes the
// store's pins and sales as delivered; after it, a pin or sale never delivered is
// returned (its event was lost).
func TestRescuedPinNeverUndoesNewer(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	rdb, prefix := testRedis(t, "livetest-pinseen")
	cleanupPrefix(t, rdb, prefix)
	ctx := context.Background()
	bus := NewRedisBus(rdb, prefix, nil, nil)
	t.Cleanup(func() { bus.Close() })
	sid, pid, other := uuid.NewString(), uuid.NewString(), uuid.NewString()
	pin := cart.PinData{Product: cart.Product{ID: pid, StreamID: sid, Stock: 5}}
	unpin := cart.UnpinData{ProductID: pid}
	publish := func(typ string, data any, stamp int64) int64 {
		t.Helper()
		body, err := encodeBody(time.Now(), data)
		if err != nil {
			t.Fatal(err)
		}
		var rec Record
		if stamp == 0 {
			rec, err = bus.PublishSeen(ctx, sid, typ, body, stockValues(data), false)
		} else {
			rec, err = bus.PublishRescued(ctx, sid, typ, body, stockValues(data), stamp)
		}
		if err != nil {
			t.Fatal(err)
		}
		return rec.Seq
	}
	stale := func(pinned, otherPinned, saleRank int) ([]string, int64) {
		t.Helper()
		keys, _, stamp, err := bus.StaleStock(ctx, sid, []StockValue{{"pin:" + pid, pinned}, {"pin:" + other, otherPinned}, {"sale:s1", saleRank}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return keys, stamp
	}

	// The first comparison: other pinned and a sale, never delivered here, are the
	// baseline.
	if keys, _ := stale(0, 1, 2); len(keys) != 0 {
		t.Fatalf("first comparison: got stale keys %v, want none (the baseline)", keys)
	}
	if seq := publish(cart.EventPin, pin, 0); seq == 0 {
		t.Fatal("the pin was not published")
	}
	time.Sleep(pinRecordWait)
	keys, stamp := stale(0, 1, 2) // the unpin lost
	if want := []string{"pin:" + pid}; !slices.Equal(keys, want) || stamp == 0 {
		t.Fatalf("got stale keys %v (stamp %d), want %v", keys, stamp, want)
	}
	if seq := publish(cart.EventUnpin, unpin, 0); seq == 0 { // the unpin, late
		t.Fatal("the late unpin was not published")
	}
	if seq := publish(cart.EventPin, pin, 0); seq == 0 { // pinned again on another node
		t.Fatal("the newer pin was not published")
	}
	if seq := publish(cart.EventUnpin, unpin, stamp); seq != 0 {
		t.Fatalf("the rescued unpin read before the newer pin got seq %d, want it dropped", seq)
	}
	// A pin of the pinned product (a rescue's, then the event on its way) is dropped,
	// and counts as a pin that went out: a rescue stamped before it is dropped too.
	time.Sleep(pinRecordWait)
	keys, stamp = stale(0, 1, 2)
	if want := []string{"pin:" + pid}; !slices.Equal(keys, want) {
		t.Fatalf("got stale keys %v, want %v", keys, want)
	}
	if seq := publish(cart.EventPin, pin, 0); seq != 0 {
		t.Fatalf("a pin of the pinned product got seq %d, want it dropped", seq)
	}
	if seq := publish(cart.EventUnpin, unpin, stamp); seq != 0 {
		t.Fatalf("the rescued unpin stamped before the repeated pin got seq %d, want it dropped", seq)
	}

	time.Sleep(pinRecordWait)
	keys, stamp = stale(0, 1, 2) // unpinned again, its event lost again
	if want := []string{"pin:" + pid}; !slices.Equal(keys, want) {
		t.Fatalf("got stale keys %v, want %v", keys, want)
	}
	if seq := publish(cart.EventUnpin, unpin, stamp); seq == 0 {
		t.Fatal("the rescued unpin was dropped, want it published")
	}
	if keys, _ := stale(0, 1, 2); len(keys) != 0 {
		t.Fatalf("after the rescue: got stale keys %v, want none", keys)
	}
	// A sale created after the baseline whose event was lost.
	keys, _, _, err := bus.StaleStock(ctx, sid, []StockValue{{"sale:s2", 2}}, nil)
	if want := []string{"sale:s2"}; err != nil || !slices.Equal(keys, want) {
		t.Fatalf("a new sale never delivered: got stale keys %v, %v, want %v", keys, err, want)
	}
}

// TestRescuedProductNeverUndoesNewer: the store's product differs from the one the
// viewers were told of (its event lost with its node): the comparison returns its
// product key. Should another node publish a newer product event (a hide, a change)
// before the rescue publishes the product it read, the rescued one is dropped, not
// published after the newer; with nothing in between, it is published. (Before: the
// rescue went out after the newer event, a hidden product shown again until the next
// comparison.)
func TestRescuedProductNeverUndoesNewer(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	rdb, prefix := testRedis(t, "livetest-productseen")
	cleanupPrefix(t, rdb, prefix)
	ctx := context.Background()
	bus := NewRedisBus(rdb, prefix, nil, nil)
	t.Cleanup(func() { bus.Close() })
	sid, pid := uuid.NewString(), uuid.NewString()
	version := func(title string, hidden bool) cart.ProductData {
		return cart.ProductData{Product: cart.Product{ID: pid, StreamID: sid, SKU: "S", Title: title, PriceCents: 100, Currency: "EUR", Stock: 5, Hidden: hidden}, Toggled: hidden}
	}
	publish := func(data cart.ProductData, stamp int64) int64 {
		t.Helper()
		body, err := encodeBody(time.Now(), data)
		if err != nil {
			t.Fatal(err)
		}
		var rec Record
		if stamp == 0 {
			rec, err = bus.PublishSeen(ctx, sid, cart.EventProduct, body, stockValues(data), false)
		} else {
			rec, err = bus.PublishRescued(ctx, sid, cart.EventProduct, body, stockValues(data), stamp)
		}
		if err != nil {
			t.Fatal(err)
		}
		return rec.Seq
	}
	stale := func(store cart.ProductData) ([]string, int64) {
		t.Helper()
		keys, _, stamp, err := bus.StaleStock(ctx, sid, []StockValue{{"product:" + pid, productValue(store.Product)}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return keys, stamp
	}

	v1, v2, hidden, v4 := version("one", false), version("two", false), version("two", true), version("four", false)
	if keys, _ := stale(v1); len(keys) != 0 { // the baseline
		t.Fatalf("first comparison: got stale keys %v, want none (the baseline)", keys)
	}
	if seq := publish(v1, 0); seq == 0 {
		t.Fatal("the product was not published")
	}
	time.Sleep(pinRecordWait)
	keys, stamp := stale(v2) // v2's event lost
	if want := []string{"product:" + pid}; !slices.Equal(keys, want) || stamp == 0 {
		t.Fatalf("got stale keys %v (stamp %d), want %v", keys, stamp, want)
	}
	if seq := publish(hidden, 0); seq == 0 { // hidden on another node meanwhile
		t.Fatal("the hide was not published")
	}
	if seq := publish(v2, stamp); seq != 0 {
		t.Fatalf("the rescued product read before the hide got seq %d, want it dropped", seq)
	}
	if keys, _ := stale(hidden); len(keys) != 0 {
		t.Fatalf("after the hide: got stale keys %v, want none", keys)
	}

	time.Sleep(pinRecordWait)
	keys, stamp = stale(v4) // unhidden and changed, its event lost
	if want := []string{"product:" + pid}; !slices.Equal(keys, want) {
		t.Fatalf("got stale keys %v, want %v", keys, want)
	}
	if seq := publish(v4, stamp); seq == 0 {
		t.Fatal("the rescued product was dropped with nothing in between, want it published")
	}
	if keys, _ := stale(v4); len(keys) != 0 {
		t.Fatalf("after the rescue: got stale keys %v, want none", keys)
	}
}
