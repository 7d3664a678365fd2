package cart

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeLayout1File writes a file of the first layout (keys as main at dd8cc2e wrote
// them) with n buyers, each with one order (user_orders, idem, idem_expiry) and one hold
// in the cart (user_holds, holds, hold_expiry). User ids differ in length, as JWT subs
// do. Written 1,000 buyers per transaction, so the writing itself stays cheap.
func writeLayout1File(tb testing.TB, path string, n int) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	names := append([][]byte{bucketStreams, bucketAudit, bucketMute, bucketOrigin, layout1UserHolds, layout1UserOrders, layout1Idem}, commerceBuckets...)
	for lo := 0; lo < n; lo += 1000 {
		err := db.Update(func(tx *bolt.Tx) error {
			for _, name := range names {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			for i := lo; i < min(lo+1000, n); i++ {
				user := fmt.Sprintf("buyer-%x", i*7919)
				oid, hid := fmt.Sprintf("01a2f000-0000-7000-8000-%012d", i), fmt.Sprintf("01a2f000-0000-7000-9000-%012d", i)
				raw, err := marshalRecord(Order{ID: oid, UserID: user, StreamID: "s", Currency: "EUR", Status: "placed", CreatedAt: at, Items: []OrderItem{}})
				if err != nil {
					return err
				}
				if err := tx.Bucket(bucketOrders).Put([]byte(oid), raw); err != nil {
					return err
				}
				if _, err := appendIndex(tx.Bucket(layout1UserOrders), user, oid); err != nil {
					return err
				}
				idemKey := join(user, "key-"+oid)
				if raw, err = marshalRecord(boltIdem{Fingerprint: "fp", OrderID: oid, At: at}); err != nil {
					return err
				}
				if err := tx.Bucket(layout1Idem).Put([]byte(idemKey), raw); err != nil {
					return err
				}
				if err := tx.Bucket(bucketIdemExpiry).Put(timeKey(at, idemKey), nil); err != nil {
					return err
				}
				h := boltHold{Hold: Hold{ID: hid, UserID: user, StreamID: "s", ProductID: "p", Quantity: 1, Currency: "EUR", ExpiresAt: at.Add(time.Hour)}, User: user}
				if h.CartKey, err = appendIndex(tx.Bucket(layout1UserHolds), user, hid); err != nil {
					return err
				}
				if err := putHoldRecord(tx, h); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkBoltMigrateLayout1 opens a file of the first layout with n buyers (one order,
// one idempotency key, one hold in the cart each): one op is one OpenBolt, which moves
// them all in one transaction, and Close (NoSync off: the real fsyncs).
//
//	go test ./cart -run '^$' -bench BoltMigrateLayout1 -benchtime 3x
func BenchmarkBoltMigrateLayout1(b *testing.B) {
	for _, n := range []int{10_000, 40_000} {
		b.Run(fmt.Sprintf("buyers=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			tmpl := filepath.Join(dir, "layout1.db")
			writeLayout1File(b, tmpl, n)
			benchOpens(b, dir, tmpl)
		})
	}
}

// BenchmarkBoltMigrateLayout2 is BenchmarkBoltMigrateLayout1 with a file of the second
// layout (writeLayout1File's, moved by migrateLayout1 alone): OpenBolt moves every
// idempotency record from users to idem_expiry.
//
//	go test ./cart -run '^$' -bench BoltMigrateLayout2 -benchtime 3x
func BenchmarkBoltMigrateLayout2(b *testing.B) {
	for _, n := range []int{10_000, 40_000} {
		b.Run(fmt.Sprintf("buyers=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			tmpl := filepath.Join(dir, "layout2.db")
			writeLayout1File(b, tmpl, n)
			db, err := bolt.Open(tmpl, 0o600, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := db.Update(migrateLayout1); err != nil {
				b.Fatal(err)
			}
			db.Close()
			benchOpens(b, dir, tmpl)
		})
	}
}

// benchOpens times b.N opens (OpenBolt and Close) of copies of the file tmpl.
func benchOpens(b *testing.B, dir, tmpl string) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		path := filepath.Join(dir, fmt.Sprintf("open-%d.db", i))
		copyFile(b, tmpl, path)
		b.StartTimer()
		st, err := OpenBolt(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.Remove(path)
		b.StartTimer()
	}
}

func copyFile(tb testing.TB, from, to string) {
	src, err := os.Open(from)
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		tb.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		tb.Fatal(err)
	}
}
