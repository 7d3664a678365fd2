package cart

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkBoltOpenLiveSale opens a file whose stream has a live sale and n orders of
// it (and n holds of it in carts): OpenBolt rebuilds the carts and the per-user counts
// (loadHoldIndex) by reading every hold and every order of the stream. One op is one
// OpenBolt and Close.
//
//	go test ./cart -run '^$' -bench BoltOpenLiveSale -benchtime 3x
func BenchmarkBoltOpenLiveSale(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("orders=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			tmpl := filepath.Join(dir, "live.db")
			writeLiveSaleFile(b, tmpl, n)
			benchOpens(b, dir, tmpl)
		})
	}
}

// writeLiveSaleFile writes a file of this layout: stream "s", an active sale of 2n
// units, n buyers who each ordered 1 unit of it and hold 1 more.
func writeLiveSaleFile(tb testing.TB, path string, n int) {
	st, err := OpenBolt(path)
	if err != nil {
		tb.Fatal(err)
	}
	st.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sale := Sale{ID: "01a2f000-0000-7000-a000-000000000001", StreamID: "s", ProductID: "p", PriceCents: 1, Quantity: 2 * n,
		PerUserLimit: 2, Held: n, Sold: n, Status: SaleActive, StartsAt: at, EndsAt: at.Add(time.Hour)}
	for lo := 0; lo < n; lo += 1000 {
		err := db.Update(func(tx *bolt.Tx) error {
			if lo == 0 {
				if err := putJSON(tx.Bucket(bucketSales), sale.ID, sale); err != nil {
					return err
				}
				if err := tx.Bucket(bucketLiveSales).Put([]byte(sale.ID), nil); err != nil {
					return err
				}
			}
			for i := lo; i < min(lo+1000, n); i++ {
				user := fmt.Sprintf("buyer-%x", i*7919)
				oid, hid := fmt.Sprintf("01a2f000-0000-7000-8000-%012d", i), fmt.Sprintf("01a2f000-0000-7000-9000-%012d", i)
				raw, err := marshalRecord(Order{ID: oid, UserID: user, StreamID: "s", Currency: "EUR", Status: "placed", CreatedAt: at,
					Items: []OrderItem{{ProductID: "p", SaleID: sale.ID, Quantity: 1, UnitPriceCents: 1}}, TotalCents: 1})
				if err != nil {
					return err
				}
				if err := tx.Bucket(bucketOrders).Put([]byte(oid), raw); err != nil {
					return err
				}
				if _, err := appendIndex(tx.Bucket(bucketStreamOrders), "s", oid); err != nil {
					return err
				}
				seq, err := tx.Bucket(bucketHolds).NextSequence()
				if err != nil {
					return err
				}
				h := boltHold{Hold: Hold{ID: hid, UserID: user, StreamID: "s", ProductID: "p", SaleID: sale.ID, Quantity: 1, Currency: "EUR",
					ExpiresAt: at.Add(time.Hour)}, User: user, CartKey: string(appendSeqHex(userKey(user, kindCart, ""), seq))}
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

// putHoldRecord writes a hold's record and its expiry entry straight to the file, as
// HoldUnits does (for benchmarks that make many holds fast).
func putHoldRecord(tx *bolt.Tx, h boltHold) error {
	raw, err := marshalRecord(h)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketHolds).Put([]byte(h.ID), raw); err != nil {
		return err
	}
	return tx.Bucket(bucketHoldExpiry).Put(timeKey(h.ExpiresAt, h.ID), nil)
}
