package cart

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkBoltOpenLiveSaleHistory opens the worst realistic restart of a day of
// sales: a stream with a live sale (live orders of it, and as many holds) after hist
// orders of the stream's earlier, ended sales (a long stream; other streams' orders
// are not read on open either way). One op is one OpenBolt and Close, warm cache.
//
//	go test ./cart -run '^$' -bench BoltOpenLiveSaleHistory -benchtime 3x
func BenchmarkBoltOpenLiveSaleHistory(b *testing.B) {
	b.Cleanup(func() {
		historyFiles.Range(func(_, p any) bool { os.RemoveAll(filepath.Dir(p.(string))); return true })
	})
	for _, c := range []struct{ hist, live int }{{0, 10_000}, {1_000_000, 10_000}} {
		b.Run(fmt.Sprintf("history=%d/live=%d", c.hist, c.live), func(b *testing.B) {
			tmpl := historyFile(b, c.hist, c.live)
			benchOpens(b, b.TempDir(), tmpl)
		})
	}
}

var historyFiles sync.Map // "hist/live" → template path (written once per process)

// historyFile writes (once) a file of stream "s": hist orders of an ended sale, then an
// active sale (its live_sales value the stream_orders sequence at its creation, as
// CreateSale keeps it) with live buyers who each ordered 1 unit of it and hold 1 more.
func historyFile(b *testing.B, hist, live int) string {
	key := fmt.Sprintf("%d/%d", hist, live)
	if p, ok := historyFiles.Load(key); ok {
		return p.(string)
	}
	var path string
	if d := os.Getenv("LIVECART_BENCH_CACHE"); d != "" { // kept across processes (A/B runs)
		path = filepath.Join(d, fmt.Sprintf("history-%d-%d.db", hist, live))
		if _, err := os.Stat(path); err == nil {
			return path
		}
	} else {
		dir, err := os.MkdirTemp("", "livecart-history-")
		if err != nil {
			b.Fatal(err)
		}
		path = filepath.Join(dir, "history.db")
		historyFiles.Store(key, path)
	}
	writeHistoryFile(b, path, hist, live)
	return path
}

func writeHistoryFile(b *testing.B, path string, hist, live int) {
	st, err := OpenBolt(path)
	if err != nil {
		b.Fatal(err)
	}
	st.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	old := Sale{ID: "01a2f000-0000-7000-a000-000000000000", StreamID: "s", ProductID: "p", PriceCents: 1, Quantity: hist,
		PerUserLimit: 1, Sold: hist, Status: SaleEnded, StartsAt: at.Add(-10 * time.Hour), EndsAt: at.Add(-time.Hour)}
	sale := Sale{ID: "01a2f000-0000-7000-a000-000000000001", StreamID: "s", ProductID: "p", PriceCents: 1, Quantity: 2 * live,
		PerUserLimit: 2, Held: live, Sold: live, Status: SaleActive, StartsAt: at, EndsAt: at.Add(time.Hour)}
	order := func(tx *bolt.Tx, i int, sale string) error {
		oid := fmt.Sprintf("01a2f000-0000-7000-8000-%012d", i)
		raw, err := marshalRecord(Order{ID: oid, UserID: fmt.Sprintf("buyer-%x", i*7919), StreamID: "s", Currency: "EUR", Status: "placed", CreatedAt: at,
			Items: []OrderItem{{ProductID: "p", SaleID: sale, Quantity: 1, UnitPriceCents: 1}}, TotalCents: 1})
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketOrders).Put([]byte(oid), raw); err != nil {
			return err
		}
		_, err = appendIndex(tx.Bucket(bucketStreamOrders), "s", oid)
		return err
	}
	for lo := 0; lo < hist+live; lo += 5000 {
		err := db.Update(func(tx *bolt.Tx) error {
			for _, name := range [][]byte{bucketOrders, bucketStreamOrders, bucketHolds} {
				tx.Bucket(name).FillPercent = 0.9
			}
			for i := lo; i < min(lo+5000, hist+live); i++ {
				if i < hist {
					if err := order(tx, i, old.ID); err != nil {
						return err
					}
					continue
				}
				if i == hist {
					if err := putJSON(tx.Bucket(bucketSales), old.ID, old); err != nil {
						return err
					}
					if err := putJSON(tx.Bucket(bucketSales), sale.ID, sale); err != nil {
						return err
					}
					from := binary.BigEndian.AppendUint64(nil, tx.Bucket(bucketStreamOrders).Sequence()+1)
					if err := tx.Bucket(bucketLiveSales).Put([]byte(sale.ID), from); err != nil {
						return err
					}
				}
				if err := order(tx, i, sale.ID); err != nil {
					return err
				}
				user := fmt.Sprintf("buyer-%x", i*7919)
				hid := fmt.Sprintf("01a2f000-0000-7000-9000-%012d", i)
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
			b.Fatal(err)
		}
	}
}
