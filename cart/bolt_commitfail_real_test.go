//go:build linux

package cart

import (
	"context"
	"errors"
	"os"
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
	cmd, sc := stormChild(t, "TestBoltFileSizeChild", fileSizeEnv, path, 60*time.Second)
	var (
		acks                     = newStormAcks()
		failedHolds, failedOrder []string
		efbig, grow, done        int
		after                    int // acknowledgements after the limit was lifted
		restored                 bool
		lines                    []string
	)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case acks.read(f):
			if restored && f[0] != "SETUP" {
				after++
			}
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
	checkHoldIndexMatchesFile(t, st, "after the reopen")
	limited := acks.check(t, st, "after the reopen")
	t.Logf("%d holds and %d checkouts failed in bbolt (%d EFBIG: %d growing the file, %d writing pages), %d acknowledged after the limit was lifted; %d holds, %d orders acknowledged, all there; %d buyers at the limit",
		len(failedHolds), len(failedOrder), efbig, grow, efbig-grow, after, len(acks.holds), len(acks.orders), limited)
}

// TestBoltFileSizeChild is the child of TestBoltBboltCommitFails.
func TestBoltFileSizeChild(t *testing.T) {
	path := os.Getenv(fileSizeEnv)
	if path == "" {
		t.Skip("only run as the child of TestBoltBboltCommitFails")
	}
	signal.Ignore(syscall.SIGXFSZ) // a write past the limit fails with EFBIG instead
	st, sale, say := stormStore(t, path)
	ctx := context.Background()
	var acks, fails, growFails atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				user, req := stormHold(w, i, sale)
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
	checkStreamInvariants(t, st, sale.StreamID, map[string]int{sale.ProductID: 1_000_000})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if !t.Failed() {
		say("DONE")
	}
}
