package live

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

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
		_, ok, err := b.PublishStock(ctx, sid, key, ver, interval, "stock", []byte(`"ts":"x","remaining":1}`))
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
