package cart

import (
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// TestBoltIdemIndexSmall: the in-memory idempotency index, rebuilt on open, holds every
// key of the last 24 h, 7.2 million at 5,000 checkouts a minute. With UUID users and
// keys it takes well under 72 bytes a key (as strings it took ~110: ~0.8 GB for a day
// at that rate, more for longer keys).
func TestBoltIdemIndexSmall(t *testing.T) {
	const n = 100_000
	path := filepath.Join(t.TempDir(), "idem.db")
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour).UTC()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIdemExpiry)
		for i := range n {
			rec := boltIdem{Fingerprint: "fp", OrderID: newID(), At: at.Add(time.Duration(i))}
			raw, err := marshalRecord(rec)
			if err != nil {
				return err
			}
			if err := b.Put(timeKey(rec.At, string(userKey(uuid.NewString(), kindIdem, uuid.NewString()))), raw); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC() // and what sync.Pools kept
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	st, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	perKey := float64(int64(heap())-int64(before)) / n
	if len(st.idem) != n {
		t.Fatalf("%d keys in the index, want %d", len(st.idem), n)
	}
	if perKey > 72 {
		t.Errorf("the index of %d keys: %.0f bytes a key, want at most 72", n, perKey)
	}
	t.Logf("%.1f bytes a key", perKey)
}
