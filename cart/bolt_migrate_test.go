package cart

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestBoltMigrateForgetsOrphanKeys: a first-layout file can hold an idempotency record
// without its idem_expiry entry (a failed checkout reusing a stale key dropped only the
// entry, before 09edac4). After the move every key is forgotten 24 h after its time, that
// one too.
func TestBoltMigrateForgetsOrphanKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "layout1.db")
	writeLayout1File(t, path, 3)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { // orphan the first key
		c := tx.Bucket(bucketIdemExpiry).Cursor()
		k, _ := c.First()
		return c.Bucket().Delete(bytes.Clone(k))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC) // writeLayout1File's
	// The sweep's forgetting (the file's holds name no product: ReleaseExpiredHolds' own
	// release of them would fail).
	if err := st.update(func(t *boltTx) error { return t.forgetIdempotencyKeys(at.Add(IdempotencyTTL+time.Hour), 100) }); err != nil {
		t.Fatal(err)
	}
	st.db.View(func(tx *bolt.Tx) error {
		n := tx.Bucket(bucketIdemExpiry).Stats().KeyN
		tx.Bucket(bucketUsers).ForEach(func(k, _ []byte) error {
			if i := bytes.IndexByte(k, ':'); i >= 0 && bytes.Contains(k[i:], []byte("ikey-")) {
				n++
			}
			return nil
		})
		if n != 0 {
			t.Errorf("%d idempotency entries left 25 h after their time, want 0", n)
		}
		return nil
	})
}
