package cart

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

const crashEnv = "LIVECART_CRASH_CHILD_DB"

// TestBoltCrash SIGKILLs a child process in the middle of a hold and checkout storm on
// a bbolt file; on reopen every hold and order the child acknowledged is there and the
// invariants hold. The child indexes its order log every 300 orders, so the kill leaves
// orders in users' index and (most often) some in the log, and on reopen the
// idempotency index is rebuilt from idem_expiry: every acknowledged order's key replays
// it, and the key with another body is refused (409). Then, the log indexed by the idle
// writer, every order is listed again.
func TestBoltCrash(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("child")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	cmd, sc := stormChild(t, "TestBoltCrashChild", crashEnv, path, 20*time.Second)
	acks := newStormAcks()
	killed := false
	for sc.Scan() {
		acks.read(strings.Fields(sc.Text()))
		if !killed && len(acks.holds)+len(acks.orders) >= 1500 {
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	cmd.Wait()
	if !killed || acks.streamID == "" {
		t.Fatalf("child ended before the kill (%d holds, %d orders acknowledged)", len(acks.holds), len(acks.orders))
	}
	// Not indexed when idle until the reopen below: the checks read the log as the
	// kill left it (OpenBolt's writer indexed it 200 ms after opening, often before
	// the counts below).
	st, err := openBolt(path, boltTuning{indexBatch: defaultTuning.indexBatch, indexIdle: time.Hour})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer func() { st.Close() }()
	ctx := context.Background()
	limited := acks.check(t, st, "after the kill")
	logged, indexed := (&indexFixture{t: t, st: st}).counts()
	if indexed == 0 {
		t.Errorf("after the kill: %d orders in the log, none indexed; want batches of 300 indexed", logged)
	}
	// Replays, concurrent (one group commit for many).
	var wg sync.WaitGroup
	var mu sync.Mutex
	replayed := 0
	for user, oid := range acks.orders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := st.Checkout(ctx, CheckoutRequest{OrderID: uuid.NewString(), UserID: user, IdempotencyKey: "k"}, time.Now())
			if err != nil || res.Created || res.Order.ID != oid {
				t.Errorf("%s replays its key: order %s created %v %v; want %s", user, res.Order.ID, res.Created, err, oid)
			}
			_, err = st.Checkout(ctx, CheckoutRequest{OrderID: uuid.NewString(), UserID: user, IdempotencyKey: "k", Fingerprint: "another body"}, time.Now())
			if !errors.Is(err, ErrConflict) {
				t.Errorf("%s's key with another body after the kill: %v, want ErrConflict", user, err)
			}
			mu.Lock()
			replayed++
			mu.Unlock()
		}()
	}
	wg.Wait()
	st.Close()
	if st, err = OpenBolt(path); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if l, _ := (&indexFixture{t: t, st: st}).counts(); l == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d orders still in the log 10 s after reopening", l)
		}
	}
	acks.checkOrders(t, st, "after the log was indexed")
	t.Logf("killed after %d holds, %d orders acknowledged, all present (%d in the log, %d indexed); %d buyers at the sale's limit; %d replays",
		len(acks.holds), len(acks.orders), logged, indexed, limited, replayed)
}

// TestBoltCrashChild is the child of TestBoltCrash: it storms until it is killed,
// printing each acknowledged hold and order.
func TestBoltCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("only run as the child of TestBoltCrash")
	}
	st, sale, say := stormStore(t, path)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				user, req := stormHold(w, i, sale)
				h, _, err := st.HoldUnits(ctx, req, time.Now())
				if err != nil {
					t.Error(err)
					return
				}
				say("HOLD %s %s", user, h.ID)
				if i%2 == 0 {
					res, err := st.Checkout(ctx, CheckoutRequest{OrderID: uuid.NewString(), UserID: user, IdempotencyKey: "k"}, time.Now())
					if err != nil {
						t.Error(err)
						return
					}
					say("ORDER %s %s", user, res.Order.ID)
				}
			}
		}()
	}
	wg.Wait()
}

// stormChild starts this test binary again as a child process that runs only the test
// named child, with the environment variable env set to path (the child's bbolt file)
// and its standard error ours; it returns the child and the lines of its standard
// output. The child is killed after timeout.
func stormChild(t *testing.T, child, env, path string, timeout time.Duration) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+child+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(timeout, func() { cmd.Process.Kill() })
	t.Cleanup(func() { timer.Stop() })
	return cmd, bufio.NewScanner(out)
}

// stormStore opens a storm child's store on path (its order log indexed every 300
// orders) with a stream, a product of 1,000,000 units and an active sale of 500,000 of
// them (limit 1 a buyer), says "SETUP stream product units put in", and returns the
// store, the sale and say, which prints one line to standard output (the parent reads
// the child's acknowledgements there).
func stormStore(t *testing.T, path string) (*BoltStore, Sale, func(format string, args ...any)) {
	st, err := openBolt(path, boltTuning{indexBatch: 300, indexIdle: defaultTuning.indexIdle})
	if err != nil {
		t.Fatal(err)
	}
	ctx, now := context.Background(), time.Now()
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	sid := uuid.NewString()
	if err := st.CreateStream(ctx, Stream{ID: sid, Status: StreamIdle, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	p, err := st.CreateProduct(ctx, Product{ID: uuid.NewString(), StreamID: sid, Currency: "EUR", PriceCents: 100, Stock: 1_000_000}, 0)
	if err != nil {
		t.Fatal(err)
	}
	sale, _, err := st.CreateSale(ctx, Sale{ID: uuid.NewString(), StreamID: sid, ProductID: p.ID, PriceCents: 50,
		Quantity: 500_000, PerUserLimit: 1, StartsAt: now, EndsAt: now.Add(time.Hour)}, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	say("SETUP %s %s %d", sid, p.ID, 1_000_000)
	return st, sale, say
}

// stormHold is the storm's i-th hold of worker w: buyer "w<w>-<i>", one unit of the
// sale, but of the product itself for every third buyer (i%3 == 0).
func stormHold(w, i int, sale Sale) (string, HoldRequest) {
	user := fmt.Sprintf("w%d-%d", w, i)
	req := HoldRequest{ID: uuid.NewString(), UserID: user, SaleID: sale.ID, Quantity: 1, ExpiresAt: time.Now().Add(time.Hour)}
	if i%3 == 0 {
		req.SaleID, req.ProductID = "", sale.ProductID
	}
	return user, req
}

// stormAcks is what a storm child acknowledged (its lines SETUP, HOLD, ORDER).
type stormAcks struct {
	streamID, productID string
	putIn               int
	holds, orders       map[string]string // user → acknowledged hold, order
}

func newStormAcks() *stormAcks {
	return &stormAcks{holds: map[string]string{}, orders: map[string]string{}}
}

// read takes one of the child's lines (its fields); it says whether it was one of these.
func (a *stormAcks) read(f []string) bool {
	switch {
	case len(f) == 4 && f[0] == "SETUP":
		a.streamID, a.productID = f[1], f[2]
		a.putIn, _ = strconv.Atoi(f[3])
	case len(f) == 3 && f[0] == "HOLD":
		a.holds[f[1]] = f[2]
	case len(f) == 3 && f[0] == "ORDER":
		a.orders[f[1]] = f[2]
	default:
		return false
	}
	return true
}

// check: in the reopened store every acknowledged hold is in its buyer's cart or
// ordered, every acknowledged order is listed, the invariants hold, and every buyer
// with an acknowledged hold of the sale (limit 1; the buyers w-i with i%3 != 0), held
// or ordered, is refused a second unit (the per-user counts rebuilt on open). It
// returns how many buyers were refused.
func (a *stormAcks) check(t *testing.T, st *BoltStore, when string) (limited int) {
	t.Helper()
	ctx := context.Background()
	for user, hid := range a.holds {
		hs, err := st.ListHolds(ctx, user, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ords, _ := st.ListOrders(ctx, user)
		if !(len(hs) == 1 && hs[0].ID == hid) && len(ords) != 1 {
			t.Errorf("%s: acknowledged hold %s of %s: %d holds, %d orders; want it in the cart or ordered", when, hid, user, len(hs), len(ords))
		}
	}
	a.checkOrders(t, st, when)
	checkStreamInvariants(t, st, a.streamID, map[string]int{a.productID: a.putIn})
	sales, err := st.ListSales(ctx, a.streamID)
	if err != nil || len(sales) != 1 {
		t.Fatalf("%s: the stream's sales: %v %v", when, sales, err)
	}
	for user := range a.holds {
		var w, i int
		if _, err := fmt.Sscanf(user, "w%d-%d", &w, &i); err != nil || i%3 == 0 {
			continue
		}
		_, _, err := st.HoldUnits(ctx, HoldRequest{ID: uuid.NewString(), UserID: user, SaleID: sales[0].ID, Quantity: 1,
			ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
		if !errors.Is(err, ErrLimitExceeded) {
			t.Errorf("%s: %s, who held a unit of the sale (limit 1), holds another: %v, want limit_exceeded", when, user, err)
		}
		limited++
	}
	return limited
}

// checkOrders: every acknowledged order is its buyer's only order.
func (a *stormAcks) checkOrders(t *testing.T, st *BoltStore, when string) {
	t.Helper()
	for user, oid := range a.orders {
		ords, err := st.ListOrders(context.Background(), user)
		if err != nil || len(ords) != 1 || ords[0].ID != oid {
			t.Errorf("%s: acknowledged order %s of %s: %d orders %v", when, oid, user, len(ords), err)
		}
	}
}
