package cart

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"
)

// newRedisServerIn is newRedisServer on the first free port of lo..hi.
func newRedisServerIn(t *testing.T, lo, hi int) *redisServer {
	t.Helper()
	r := newRedisServer(t)
	for p := lo; p <= hi; p++ {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err == nil {
			ln.Close()
			r.port = p
			return r
		}
	}
	t.Fatalf("no free port in %d..%d", lo, hi)
	return nil
}

// TestRedisRefusedWritesAreUnavailable: a Redis that refuses writes (maxmemory
// reached: OOM, as READONLY after a failover or MISCONF after a failed save) is a
// store outage. A script it refuses answers ErrUnavailable (503 with Retry-After),
// not an internal error (500), and nothing of the call stays: once Redis takes writes
// again, the same checkout places its order and the counters add up.
func TestRedisRefusedWritesAreUnavailable(t *testing.T) {
	srv := newRedisServerIn(t, 16380, 16389)
	srv.start()
	st := openTestRedis(t, srv.url())
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	p := e.product(t, sid, 5)
	sale := e.sale(t, sid, 5, 5)
	h, err := e.hold("u", p.ID, "", 2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	setMaxmemory := func(v string) {
		t.Helper()
		if err := st.rdb.ConfigSet(e.ctx, "maxmemory", v).Err(); err != nil {
			t.Fatalf("CONFIG SET maxmemory %s: %v", v, err)
		}
	}
	setMaxmemory("1")
	if _, err := e.hold("u", "", sale.ID, 1, time.Hour); !errors.Is(err, ErrUnavailable) {
		t.Errorf("HoldUnits while Redis refuses writes: got %v, want ErrUnavailable", err)
	}
	if _, err := e.checkout("u", "k", nil, e.now); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Checkout while Redis refuses writes: got %v, want ErrUnavailable", err)
	}
	setMaxmemory("0")

	res, err := e.checkout("u", "k", nil, e.now)
	if err != nil || !res.Created || len(res.Order.Items) != 1 || res.Order.Items[0].Quantity != h.Quantity {
		t.Fatalf("Checkout once Redis takes writes: got %+v %v, want a new order of %d units", res, err, h.Quantity)
	}
	if got := e.getProduct(t, p.ID); got.Stock != 3 || got.Held != 0 || got.Sold != 2 {
		t.Errorf("product: got stock %d held %d sold %d, want 3 0 2", got.Stock, got.Held, got.Sold)
	}
	if got := e.getSale(t, sale.ID); got.Remaining != 5 || got.Held != 0 {
		t.Errorf("sale: got remaining %d held %d, want 5 0", got.Remaining, got.Held)
	}
	e.checkInvariants(t)
}
