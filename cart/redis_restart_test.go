package cart

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// redisServer is a private redis-server on a loopback port, with an AOF fsynced on
// every write so that what it acknowledged survives a kill -9.
type redisServer struct {
	t    *testing.T
	dir  string
	port int
	cmd  *exec.Cmd
}

func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	r := newRedisServer(t)
	r.start()
	return r
}

// newRedisServer picks a free port and a directory for a private redis-server, and
// kills it when the test ends; it does not start it.
func newRedisServer(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not installed: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &redisServer{t: t, dir: t.TempDir(), port: port}
	t.Cleanup(r.kill)
	return r
}

func (r *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// start runs redis-server and waits until it answers (its AOF loaded).
func (r *redisServer) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.port), MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on port %d did not answer", r.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and reaps the process (no-op if it is not running).
func (r *redisServer) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// restartAfter kills redis-server once ready is closed, checks that the store answers
// ErrUnavailable while it is down, and starts it again on the same port and AOF.
func (r *redisServer) restartAfter(st Store, ready <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	<-ready
	r.kill()
	ctx := context.Background()
	if err := st.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		r.t.Errorf("Ping while redis is down: got %v, want ErrUnavailable", err)
	}
	if _, err := st.GetSale(ctx, uuid.NewString()); !errors.Is(err, ErrUnavailable) {
		r.t.Errorf("GetSale while redis is down: got %v, want ErrUnavailable", err)
	}
	time.Sleep(300 * time.Millisecond) // the storm keeps knocking meanwhile
	r.start()
}

// TestRedisRestartMidStorm kills redis-server (SIGKILL) in the middle of a hold storm
// and again in the middle of the checkouts. Buyers retry what was not acknowledged
// (the same hold id, the same idempotency key), as a client retries a 503. After:
// no oversell, every acknowledged hold and order is there, each buyer has exactly one
// order, and the invariants hold.
func TestRedisRestartMidStorm(t *testing.T) {
	testRestartMidStorm(t, nil)
}

// TestRedisRestartMidStormOvertaken is TestRedisRestartMidStorm with every batch of
// the stream that can be overtaken by a second one in flight overtaken (see
// batchOverlap): two batches in flight through an outage answer every caller, and
// the queues' counts of batches in flight come back to none (not stuck at one or
// two, which would leave a stream with fewer, or more, batches at Redis after).
func TestRedisRestartMidStormOvertaken(t *testing.T) {
	holdsO, checkoutsO := &batchOverlap{wait: 5 * time.Millisecond}, &batchOverlap{wait: 30 * time.Millisecond}
	testRestartMidStorm(t, func(st *RedisStore) {
		st.holds.run = wrapOverlap(holdsO, st.holds.run)
		st.checkouts.run = wrapOverlap(checkoutsO, st.checkouts.run)
	})
	holdsO.check(t, "holds")
	checkoutsO.check(t, "checkouts")
}

func testRestartMidStorm(t *testing.T, setup func(st *RedisStore)) {
	srv := startRedisServer(t)
	st := openTestRedis(t, srv.url())
	if setup != nil {
		setup(st)
	}
	e := &env{st: st, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	const units, buyers = 300, 1000
	sale := e.sale(t, e.stream(t), units, 1)

	// Phase 1: holds.
	var (
		mu          sync.Mutex
		winners     = map[string]Hold{} // user → acknowledged hold
		soldOut     atomic.Int64
		unavailable atomic.Int64
		acked       atomic.Int64
	)
	ready, restarted := make(chan struct{}), make(chan struct{})
	var once sync.Once
	go srv.restartAfter(st, ready, restarted)
	retry := func(err error) bool {
		if errors.Is(err, ErrUnavailable) {
			unavailable.Add(1)
			time.Sleep(20 * time.Millisecond)
			return true
		}
		return false
	}
	var wg sync.WaitGroup
	for i := 0; i < buyers; i++ {
		wg.Add(1)
		go func(user string) {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(600)) * time.Millisecond)
			req := HoldRequest{ID: uuid.NewString(), UserID: user, SaleID: sale.ID, Quantity: 1, ExpiresAt: e.now.Add(time.Hour)}
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
				h, _, err := st.HoldUnits(e.ctx, req, e.now)
				switch {
				case err == nil:
					mu.Lock()
					winners[user] = h
					mu.Unlock()
					if acked.Add(1) == units/3 {
						once.Do(func() { close(ready) })
					}
					return
				case errors.Is(err, ErrSoldOut):
					soldOut.Add(1)
					return
				case retry(err):
				default:
					t.Errorf("hold %s: %v", user, err)
					return
				}
			}
			t.Errorf("hold %s: no answer in 30 s", user)
		}(fmt.Sprintf("buyer-%d", i))
	}
	wg.Wait()
	once.Do(func() { close(ready) })
	<-restarted
	if len(winners) != units || soldOut.Load() != buyers-units {
		t.Fatalf("holds: got %d acknowledged and %d sold_out, want %d and %d", len(winners), soldOut.Load(), units, buyers-units)
	}
	if unavailable.Load() == 0 {
		t.Errorf("holds: got no ErrUnavailable while redis was down, want some")
	}
	got := e.getSale(t, sale.ID)
	if got.Held != units || got.Remaining != 0 {
		t.Fatalf("sale after the hold storm: got held %d remaining %d, want %d 0", got.Held, got.Remaining, units)
	}
	for user, h := range winners {
		holds, err := st.ListHolds(e.ctx, user, e.now)
		if err != nil || len(holds) != 1 || holds[0].ID != h.ID {
			t.Fatalf("cart of %s: got %+v %v, want its acknowledged hold %s", user, holds, err, h.ID)
		}
	}
	t.Logf("holds: %d acknowledged, %d sold out, %d unavailable answers retried", len(winners), soldOut.Load(), unavailable.Load())

	// Phase 2: every winner checks out; redis dies again half way.
	unavailable.Store(0)
	acked.Store(0)
	ready, restarted, once = make(chan struct{}), make(chan struct{}), sync.Once{}
	go srv.restartAfter(st, ready, restarted)
	orders := map[string]Order{}
	for user := range winners {
		wg.Add(1)
		go func(user string) {
			defer wg.Done()
			// Buyers arrive over 600 ms (grouped checkouts would otherwise all be
			// answered before redis-server dies).
			time.Sleep(time.Duration(rand.IntN(600)) * time.Millisecond)
			req := CheckoutRequest{OrderID: uuid.NewString(), UserID: user, IdempotencyKey: "key-" + user, Fingerprint: "{}"}
			for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
				res, err := st.Checkout(e.ctx, req, e.now.Add(time.Second))
				switch {
				case err == nil:
					mu.Lock()
					orders[user] = res.Order
					mu.Unlock()
					if acked.Add(1) == units/3 {
						once.Do(func() { close(ready) })
					}
					return
				case errors.Is(err, ErrConflict): // the same key still in progress
					time.Sleep(50 * time.Millisecond)
				case retry(err):
				default:
					t.Errorf("checkout %s: %v", user, err)
					return
				}
			}
			t.Errorf("checkout %s: no order in 60 s", user)
		}(user)
	}
	wg.Wait()
	once.Do(func() { close(ready) })
	<-restarted
	if unavailable.Load() == 0 {
		t.Errorf("checkouts: got no ErrUnavailable while redis was down, want some")
	}
	list, err := st.ListStreamOrders(e.ctx, sale.StreamID)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]bool{}
	perUser := map[string]int{}
	for _, o := range list {
		byID[o.ID] = true
		perUser[o.UserID]++
	}
	for user, o := range orders {
		if !byID[o.ID] {
			t.Errorf("acknowledged order %s of %s is lost", o.ID, user)
		}
		if perUser[user] != 1 {
			t.Errorf("%s: got %d orders, want exactly 1", user, perUser[user])
		}
	}
	got = e.getSale(t, sale.ID)
	if len(orders) != units || len(list) != units || got.Sold != units || got.Held != 0 || got.Remaining != 0 {
		t.Fatalf("after the checkouts: got %d acknowledged, %d stored orders, sale %+v; want %d sold", len(orders), len(list), got, units)
	}
	e.checkInvariants(t)
	t.Logf("checkouts: %d orders, %d unavailable answers retried", len(orders), unavailable.Load())
	checkQueuesDrained(t, st)
}

// checkQueuesDrained: once the store's background work is done, no stream is queued
// and no batch counted in flight (holds, checkouts, the shared pipeline).
func checkQueuesDrained(t *testing.T, st *RedisStore) {
	t.Helper()
	st.background.Wait()
	st.holds.mu.Lock()
	holds := len(st.holds.pending)
	st.holds.mu.Unlock()
	st.checkouts.mu.Lock()
	checkouts := len(st.checkouts.pending)
	st.checkouts.mu.Unlock()
	st.batch.mu.Lock()
	senders, pending := st.batch.senders, len(st.batch.pending)
	st.batch.mu.Unlock()
	if holds != 0 || checkouts != 0 || senders != 0 || pending != 0 {
		t.Errorf("after the storm: %d streams queued for holds, %d for checkouts, %d pipelines counted in flight with %d calls; want none",
			holds, checkouts, senders, pending)
	}
}

// TestRedisStoreOpensBeforeRedis: the store opens while its Redis is down, answers
// ErrUnavailable (Ping and calls) until it is up, then serves by itself: the scripts
// are loaded on first use (EVALSHA in pipelines falls back on NOSCRIPT), and a hold
// and a checkout work without anyone reopening the store.
func TestRedisStoreOpensBeforeRedis(t *testing.T) {
	r := newRedisServer(t)
	ctx := context.Background()
	st, err := OpenRedis(ctx, r.url(), RedisOptions{Prefix: "late"})
	if err != nil {
		t.Fatalf("OpenRedis while Redis is down: got %v, want a store", err)
	}
	defer st.Close()
	if err := st.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping while Redis is down: got %v, want ErrUnavailable", err)
	}
	if _, _, err := st.HoldUnits(ctx, HoldRequest{ID: uuid.NewString(), UserID: "u", ProductID: uuid.NewString(),
		Quantity: 1, ExpiresAt: time.Now().Add(time.Hour)}, time.Now()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("HoldUnits while Redis is down: got %v, want ErrUnavailable", err)
	}
	r.start()
	now := time.Now()
	sid := uuid.NewString()
	if err := st.CreateStream(ctx, Stream{ID: sid, Title: "t", CreatorID: "c", Status: StreamIdle, CreatedAt: now}); err != nil {
		t.Fatalf("CreateStream after Redis came up: %v", err)
	}
	p, err := st.CreateProduct(ctx, Product{ID: uuid.NewString(), StreamID: sid, SKU: "s", Title: "t", PriceCents: 100, Currency: "EUR", Stock: 3}, 0)
	if err != nil {
		t.Fatalf("CreateProduct: %v", err)
	}
	// No Ping before: the hold and the checkout go through pipelines (EVALSHA).
	h, _, err := st.HoldUnits(ctx, HoldRequest{ID: uuid.NewString(), UserID: "u", ProductID: p.ID, Quantity: 2, ExpiresAt: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatalf("HoldUnits after Redis came up: %v", err)
	}
	res, err := st.Checkout(ctx, CheckoutRequest{OrderID: uuid.NewString(), UserID: "u", IdempotencyKey: "k", Fingerprint: "f"}, now)
	if err != nil || len(res.Order.Items) != 1 || res.Order.Items[0].Quantity != h.Quantity {
		t.Fatalf("Checkout after Redis came up: got %+v %v, want an order of the hold's %d units", res.Order, err, h.Quantity)
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("Ping after Redis came up: %v", err)
	}
	// Every script is in Redis's cache under the hash the pipelines send (EVALSHA).
	for name, sc := range st.scripts {
		if ok, err := st.rdb.ScriptExists(ctx, sc.Hash()).Result(); err != nil || len(ok) != 1 || !ok[0] {
			t.Fatalf("script %s (hash %q) after Ping: exists %v %v, want loaded", name, sc.Hash(), ok, err)
		}
	}
	if got, _ := st.GetProduct(ctx, p.ID); got.Stock != 1 || got.Sold != 2 || got.Held != 0 {
		t.Fatalf("product: got stock %d sold %d held %d, want 1 2 0", got.Stock, got.Sold, got.Held)
	}
}
