//go:build linux

package cart

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// A day of idempotency keys: 7.2 million at 5,000 checkouts a minute. These benchmarks
// build a store file holding n of them (only idem_expiry, as the writer appends it:
// UUID user and key, a SHA-256 fingerprint, UUIDv7 order id; ~1.5 GB at 5 million) and
// measure what grows with it. The files are kept in the temporary directory between
// runs (livecart-bench-idem-N.db; delete them when done).

// idemBenchFile returns the path of a store file with n idempotency keys of the last
// 24 h, building it if needed.
func idemBenchFile(b *testing.B, n int) string {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("livecart-bench-idem-%d.db", n))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	b.Logf("building %s", path)
	tmp := path + ".tmp"
	os.Remove(tmp)
	st, err := OpenBolt(tmp)
	if err != nil {
		b.Fatal(err)
	}
	st.Close()
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now().Add(-23 * time.Hour).UTC()
	step := 23 * time.Hour / time.Duration(n)
	fp := make([]byte, 32)
	for done := 0; done < n; {
		err := db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket(bucketIdemExpiry)
			bk.FillPercent = appendFill
			for end := min(done+200_000, n); done < end; done++ {
				copy(fp, uuid.New().String())
				rec := boltIdem{Fingerprint: hex.EncodeToString(fp), OrderID: newID(), At: start.Add(time.Duration(done) * step)}
				raw, err := marshalRecord(rec)
				if err != nil {
					return err
				}
				if err := bk.Put(timeKey(rec.At, string(userKey(uuid.NewString(), kindIdem, uuid.NewString()))), raw); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := db.Sync(); err != nil {
		b.Fatal(err)
	}
	db.Close()
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	return path
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkBoltOpenDayOfKeys: opening a file with n idempotency keys (OpenBolt, which
// builds the in-memory index from idem_expiry, then Close), warm (the file's pages
// cached: a restarted process) and cold (dropped first: a rebooted machine); "bbolt"
// is bbolt's own open of the same file (NoFreelistSync: it walks every page to find
// the free ones; a commit that fails does the same). Reports the index's heap per key
// and the process's peak RSS.
func BenchmarkBoltOpenDayOfKeys(b *testing.B) {
	for _, n := range []int{1_000_000, 5_000_000} {
		path := idemBenchFile(b, n)
		for _, cold := range []bool{false, true} {
			name := fmt.Sprintf("keys=%d/warm", n)
			if cold {
				name = fmt.Sprintf("keys=%d/cold", n)
			}
			b.Run(name+"/bbolt", func(b *testing.B) {
				for b.Loop() {
					if cold {
						b.StopTimer()
						dropFileCache(b, path)
						b.StartTimer()
					}
					db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
					if err != nil {
						b.Fatal(err)
					}
					db.Close()
				}
			})
			b.Run(name+"/store", func(b *testing.B) {
				perKey := 0.0
				for b.Loop() {
					b.StopTimer()
					if cold {
						dropFileCache(b, path)
					}
					before := heapInUse()
					b.StartTimer()
					st, err := openBolt(path, boltTuning{indexBatch: defaultTuning.indexBatch, indexIdle: time.Hour})
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					perKey = float64(int64(heapInUse())-int64(before)) / float64(n)
					b.StartTimer()
					st.Close()
				}
				b.ReportMetric(perKey, "heapB/key")
				b.ReportMetric(float64(maxRSS())/(1<<20), "peakRSS-MiB")
			})
		}
	}
}

// BenchmarkBoltCommitFailStall: the writer's stall after a commit that reports an
// error yet landed (bbolt's failed fdatasync of the meta page; commitFault), with a
// store holding n idempotency keys: each op is one checkout whose commit fails, timed
// from the call to its answer; every checkout behind it waits as long. bbolt's own
// freelist rebuild after a real failed commit (BenchmarkBoltOpenDayOfKeys' bbolt
// figure, warm) is not in it: the commit here succeeds.
func BenchmarkBoltCommitFailStall(b *testing.B) {
	for _, n := range []int{2_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "stall.db")
			copyFile(b, idemBenchFile(b, n), path)
			st, err := openBolt(path, boltTuning{indexBatch: defaultTuning.indexBatch, indexIdle: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			ctx, now := context.Background(), time.Now().UTC()
			sid := uuid.NewString()
			if err := st.CreateStream(ctx, Stream{ID: sid, Title: "t", CreatorID: "c", Status: StreamLive, CreatedAt: now}); err != nil {
				b.Fatal(err)
			}
			p, err := st.CreateProduct(ctx, Product{ID: uuid.NewString(), StreamID: sid, SKU: "s", Title: "t", PriceCents: 1, Currency: "EUR", Stock: 1 << 30}, 0)
			if err != nil {
				b.Fatal(err)
			}
			failNext := make(chan struct{}, 1)
			st.commitFault = func() error { // set before the writer reads it (CreateProduct's group returned)
				select {
				case <-failNext:
					return errors.New("fdatasync: input/output error")
				default:
					return nil
				}
			}
			var stalled time.Duration
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				user := uuid.NewString()
				if _, _, err := st.HoldUnits(ctx, HoldRequest{ID: newID(), UserID: user, ProductID: p.ID, Quantity: 1, ExpiresAt: now.Add(time.Hour)}, now); err != nil {
					b.Fatal(err)
				}
				failNext <- struct{}{}
				b.StartTimer()
				t0 := time.Now()
				_, err := st.Checkout(ctx, CheckoutRequest{OrderID: newID(), UserID: user, IdempotencyKey: "k", Fingerprint: "fp"}, now)
				stalled += time.Since(t0)
				if !errors.Is(err, ErrUnavailable) {
					b.Fatalf("checkout whose commit fails: %v", err)
				}
			}
			b.ReportMetric(float64(stalled.Microseconds())/1000/float64(b.N), "ms/failed-commit")
		})
	}
}
