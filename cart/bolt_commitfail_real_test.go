//go:build linux

package cart

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

const fileSizeEnv = "LIVECART_FSIZE_CHILD_DB"

// TestBoltBboltCommitFails: commits that fail in bbolt itself, not through the fault
// hooks. A child process storms holds and checkouts and, midway, lowers its
// RLIMIT_FSIZE to half the file's size: bbolt's commits that must write a page above
// it (tx.write) fail with EFBIG; later, with the limit at the file's size, those that
// must grow the file (db.grow) do, as on a full disk; bbolt rolls back each
// (its free list rebuilt from the pages the file's meta reaches, NoFreelistSync).
// The writer finds each did not land (its count is not in the file) and applies
// nothing of it. The limit is then lifted and the storm goes on: the store keeps
// working (acknowledgements after it), its carts and per-user counts equal the file's,
// and a failed checkout's retry with the same key places the order once. The child
// closes the store; on reopen the file passes bbolt's own check, every acknowledged
// hold and order is there, no failed hold or order is, the invariants hold and every
// buyer with an acknowledged hold of the sale (limit 1) is refused a second unit.
func TestBoltBboltCommitFails(t *testing.T) {
	if os.Getenv(fileSizeEnv) != "" {
		t.Skip("child")
	}
	path := filepath.Join(t.TempDir(), "fsize.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestBoltFileSizeChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), fileSizeEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var (
		streamID, productID      string
		putIn                    int
		holds                    = map[string]string{} // user → acknowledged hold
		orders                   = map[string]string{} // user → acknowledged order
		failedHolds, failedOrder []string
		efbig, grow, done        int
		after                    int // acknowledgements after the limit was lifted
		restored                 bool
		lines                    []string
	)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case len(f) == 4 && f[0] == "SETUP":
			streamID, productID = f[1], f[2]
			fmt.Sscan(f[3], &putIn)
		case len(f) == 3 && f[0] == "HOLD":
			holds[f[1]] = f[2]
		case len(f) == 3 && f[0] == "ORDER":
			orders[f[1]] = f[2]
		case len(f) >= 3 && f[0] == "FAILHOLD":
			failedHolds = append(failedHolds, f[2])
		case len(f) >= 3 && f[0] == "FAILORDER":
			failedOrder = append(failedOrder, f[2])
		case len(f) == 1 && f[0] == "RESTORED":
			restored = true
		case len(f) == 1 && f[0] == "DONE":
			done++
		default:
			lines = append(lines, line)
		}
		if strings.HasPrefix(line, "FAIL") && strings.Contains(line, "file too large") {
			efbig++
			if strings.Contains(line, "file resize error") { // db.grow; else tx.write
				grow++
			}
		}
		if restored && (f[0] == "HOLD" || f[0] == "ORDER") {
			after++
		}
	}
	if err := cmd.Wait(); err != nil || done != 1 {
		t.Fatalf("child: %v (DONE %d); its other output:\n%s", err, done, strings.Join(lines, "\n"))
	}
	if efbig == 0 || grow == 0 || efbig == grow || after == 0 {
		t.Fatalf("%d failed holds, %d failed checkouts (%d with EFBIG), %d acknowledgements after the limit was lifted; want failures in bbolt, then the store working", len(failedHolds), len(failedOrder), efbig, after)
	}
	st, err := openBolt(path, boltTuning{indexBatch: defaultTuning.indexBatch, indexIdle: time.Hour})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer st.Close()
	st.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check of the file: %v", err)
		}
		for _, id := range failedHolds {
			if tx.Bucket(bucketHolds).Get([]byte(id)) != nil {
				t.Errorf("hold %s, whose commit failed, is in the file", id)
			}
		}
		for _, id := range failedOrder {
			if tx.Bucket(bucketOrders).Get([]byte(id)) != nil {
				t.Errorf("order %s, whose commit failed, is in the file", id)
			}
		}
		return nil
	})
	ctx := context.Background()
	for user, hid := range holds {
		hs, err := st.ListHolds(ctx, user, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ords, _ := st.ListOrders(ctx, user)
		if !(len(hs) == 1 && hs[0].ID == hid) && len(ords) != 1 {
			t.Errorf("acknowledged hold %s of %s: %d holds, %d orders after the reopen; want it in the cart or ordered", hid, user, len(hs), len(ords))
		}
	}
	for user, oid := range orders {
		ords, err := st.ListOrders(ctx, user)
		if err != nil || len(ords) != 1 || ords[0].ID != oid {
			t.Errorf("acknowledged order %s of %s: %d orders %v after the reopen", oid, user, len(ords), err)
		}
	}
	checkStreamInvariants(t, st, streamID, map[string]int{productID: putIn})
	checkHoldIndexMatchesFile(t, st, "after the reopen")
	sales, err := st.ListSales(ctx, streamID)
	if err != nil || len(sales) != 1 {
		t.Fatalf("sales: %v %v", sales, err)
	}
	limited := 0
	for user := range holds {
		var w, i int
		if _, err := fmt.Sscanf(user, "w%d-%d", &w, &i); err != nil || i%3 == 0 {
			continue
		}
		_, _, err := st.HoldUnits(ctx, HoldRequest{ID: uuid.NewString(), UserID: user, SaleID: sales[0].ID, Quantity: 1, ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
		if !errors.Is(err, ErrLimitExceeded) {
			t.Errorf("%s, who holds or bought a unit of the sale (limit 1), holds another after the reopen: %v", user, err)
		}
		limited++
	}
	t.Logf("%d holds and %d checkouts failed in bbolt (%d EFBIG: %d growing the file, %d writing pages), %d acknowledged after the limit was lifted; %d holds, %d orders acknowledged, all there; %d buyers at the limit",
		len(failedHolds), len(failedOrder), efbig, grow, efbig-grow, after, len(holds), len(orders), limited)
}

// TestBoltFileSizeChild is the child of TestBoltBboltCommitFails.
func TestBoltFileSizeChild(t *testing.T) {
	path := os.Getenv(fileSizeEnv)
	if path == "" {
		t.Skip("only run as the child of TestBoltBboltCommitFails")
	}
	signal.Ignore(syscall.SIGXFSZ) // a write past the limit fails with EFBIG instead
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
	p, err := st.CreateProduct(ctx, Product{ID: uuid.NewString(), StreamID: sid, Currency: "EUR", PriceCents: 100, Stock: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	sale, _, err := st.CreateSale(ctx, Sale{ID: uuid.NewString(), StreamID: sid, ProductID: p.ID, PriceCents: 50,
		Quantity: 500_000, PerUserLimit: 1, StartsAt: now, EndsAt: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	say("SETUP %s %s %d", sid, p.ID, 1_000_000)
	var acks, fails, growFails atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				user := fmt.Sprintf("w%d-%d", w, i)
				req := HoldRequest{ID: uuid.NewString(), UserID: user, SaleID: sale.ID, Quantity: 1, ExpiresAt: now.Add(time.Hour)}
				if i%3 == 0 {
					req.SaleID, req.ProductID = "", p.ID
				}
				h, _, err := st.HoldUnits(ctx, req, time.Now())
				if err != nil {
					if !errors.Is(err, ErrUnavailable) {
						t.Errorf("hold: %v", err)
						return
					}
					fails.Add(1)
					if strings.Contains(err.Error(), "file resize error") {
						growFails.Add(1)
					}
					say("FAILHOLD %s %s %v", user, req.ID, err)
					continue
				}
				say("HOLD %s %s", user, h.ID)
				acks.Add(1)
				if i%2 != 0 {
					continue
				}
				first := ""
				for try := 0; ; try++ {
					oid := uuid.NewString()
					res, err := st.Checkout(ctx, CheckoutRequest{OrderID: oid, UserID: user, IdempotencyKey: "k"}, time.Now())
					if errors.Is(err, ErrUnavailable) && try < 1000 {
						fails.Add(1)
						if strings.Contains(err.Error(), "file resize error") {
							growFails.Add(1)
						}
						say("FAILORDER %s %s %v", user, oid, err)
						if first == "" {
							first = oid
						}
						time.Sleep(2 * time.Millisecond)
						continue
					}
					if err != nil {
						t.Errorf("checkout of %s: %v", user, err)
						return
					}
					if !res.Created || res.Order.ID != oid {
						t.Errorf("%s's retry after failed commits: order %s created %v, want its own new order %s (none of the failed landed)", user, res.Order.ID, res.Created, oid)
					}
					say("ORDER %s %s", user, res.Order.ID)
					acks.Add(1)
					break
				}
			}
		}()
	}
	waitFor := func(what string, ok func() bool) {
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 20 s", what)
			}
		}
	}
	waitFor("300 acknowledgements", func() bool { return acks.Load() >= 300 })
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	limit := func(frac int64) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(fi.Size() * frac / 2), Max: lim.Max}); err != nil {
			t.Fatal(err)
		}
	}
	// Half the file: pages above it fail to be written (tx.write).
	limit(1)
	waitFor("200 failed commits", func() bool { return fails.Load() >= 200 })
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	waitFor("100 acknowledgements after the first limit was lifted", func() bool { return acks.Load() >= 400 })
	// The file's size: the commit that must grow it fails (db.grow), as on a full disk.
	limit(2)
	waitFor("20 commits failing to grow the file", func() bool { return growFails.Load() >= 20 })
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	say("RESTORED")
	base := acks.Load()
	waitFor("300 acknowledgements after the limit was lifted", func() bool { return acks.Load() >= base+300 })
	stop.Store(true)
	wg.Wait()
	checkHoldIndexMatchesFile(t, st, "after the failed commits")
	checkStreamInvariants(t, st, sid, map[string]int{p.ID: 1_000_000})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if !t.Failed() {
		say("DONE")
	}
}
