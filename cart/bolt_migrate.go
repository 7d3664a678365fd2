package cart

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// The first layout of the embedded store (until 2026-12-02) kept a buyer's cart, order
// index and idempotency keys in three buckets, each keyed by the user id joined with
// "\x00" (so user "a"'s prefix also matched user "a\x00b"'s keys):
var (
	layout1UserHolds  = []byte("user_holds")  // user, "\x00", 16 hex seq → hold id
	layout1UserOrders = []byte("user_orders") // user, "\x00", 16 hex seq → order id
	layout1Idem       = []byte("idem")        // user, "\x00", Idempotency-Key → boltIdem
)

// migrateLayout1 moves a file of the first layout to the second (which migrateLayout2
// then moves on), in the caller's transaction (OpenBolt's, so it is all or nothing):
// every cart entry to bucketCarts, every order index entry and idempotency key to
// bucketUsers, under its user's prefix and with the same sequence numbers (carts and
// order lists keep their order); the hold records name their new cart keys,
// idem_expiry is made from the idempotency records; then the three old buckets are
// deleted. A file without them is left alone.
//
// Splitting an old key: a cart or order entry ends in "\x00" and 16 hex digits, so the
// user is what comes before, even if it contains "\x00"; an idempotency key cannot
// contain "\x00" (an HTTP header value), so the user is what comes before the last
// one.
func migrateLayout1(tx *bolt.Tx) error {
	uh, uo, id := tx.Bucket(layout1UserHolds), tx.Bucket(layout1UserOrders), tx.Bucket(layout1Idem)
	if uh == nil && uo == nil && id == nil {
		return nil
	}
	users := tx.Bucket(bucketUsers)
	carts, err := tx.CreateBucketIfNotExists(bucketCarts) // dropped by migrateLayout3
	if err != nil {
		return err
	}
	type kv struct{ k, v []byte }
	// The entries for carts and users are put in key order: bbolt keeps a bucket's new
	// entries in one in-memory node until the commit, so each put out of order moves
	// all the entries after it (a file of 100k orders took two minutes).
	var cartKVs, userKVs []kv
	var expKVs []kv                 // new idem_expiry entries
	cartKeys := map[string]string{} // old cart key → new
	// seqIndex moves an index of user, "\x00", seq into to, kind and its sequence kept.
	seqIndex := func(b, to *bolt.Bucket, kind byte, renamed map[string]string, out *[]kv) error {
		if b == nil {
			return nil
		}
		if err := to.SetSequence(max(to.Sequence(), b.Sequence())); err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			n := len(k) - 17
			if n < 0 || k[n] != 0 {
				return fmt.Errorf("migrate (kind %c): key %q has no sequence", kind, k)
			}
			nk := userKey(string(k[:n]), kind, string(k[n+1:]))
			if renamed != nil {
				renamed[string(k)] = string(nk)
			}
			*out = append(*out, kv{nk, bytes.Clone(v)})
			return nil
		})
	}
	if err := seqIndex(uh, carts, kindCart, cartKeys, &cartKVs); err != nil {
		return err
	}
	if err := seqIndex(uo, users, kindOrder, nil, &userKVs); err != nil {
		return err
	}
	if id != nil {
		err := id.ForEach(func(k, v []byte) error {
			i := bytes.LastIndexByte(k, 0)
			if i < 0 {
				return fmt.Errorf("migrate idem: key %q has no user", k)
			}
			nk := userKey(string(k[:i]), kindIdem, string(k[i+1:]))
			var rec boltIdem
			if err := unmarshalRecord(v, &rec); err != nil {
				return fmt.Errorf("migrate idem %q: %w", k, err)
			}
			userKVs = append(userKVs, kv{nk, bytes.Clone(v)})
			expKVs = append(expKVs, kv{timeKey(rec.At, string(nk)), nil})
			return nil
		})
		if err != nil {
			return err
		}
	}
	putSorted := func(b *bolt.Bucket, kvs []kv) error {
		slices.SortFunc(kvs, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
		for _, e := range kvs {
			if err := b.Put(e.k, e.v); err != nil {
				return err
			}
		}
		return nil
	}
	if err := putSorted(carts, cartKVs); err != nil {
		return err
	}
	if err := putSorted(users, userKVs); err != nil {
		return err
	}
	// idem_expiry (created time, then the idempotency key) is made anew from the
	// records' times, so a record whose entry was lost (a failed checkout reusing a
	// stale key dropped only the entry, before 09edac4) is forgotten too.
	if err := tx.DeleteBucket(bucketIdemExpiry); err != nil {
		return err
	}
	var exp *bolt.Bucket
	exp, err = tx.CreateBucket(bucketIdemExpiry)
	if err != nil {
		return err
	}
	if err := putSorted(exp, expKVs); err != nil {
		return err
	}
	// Hold records name their cart entry.
	holds := tx.Bucket(bucketHolds)
	var recs []kv
	err = holds.ForEach(func(k, v []byte) error {
		var h boltHold
		if err := unmarshalRecord(v, &h); err != nil {
			return fmt.Errorf("migrate hold %s: %w", k, err)
		}
		nk, ok := cartKeys[h.CartKey]
		if !ok && len(h.CartKey) >= 16 { // not in the index (never so): the key it would have
			nk = string(userKey(h.User, kindCart, h.CartKey[len(h.CartKey)-16:]))
		}
		h.CartKey = nk
		raw, err := marshalRecord(h)
		if err != nil {
			return err
		}
		recs = append(recs, kv{bytes.Clone(k), raw})
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := holds.Put(r.k, r.v); err != nil {
			return err
		}
	}
	for _, name := range [][]byte{layout1UserHolds, layout1UserOrders, layout1Idem} {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
	}
	return nil
}

// The second layout's user-keyed buckets of holds (until 2026-12-02, main at 70a2478):
var (
	bucketCarts    = []byte("carts")     // userKey(user, 'c', seq) → hold id
	bucketUserSale = []byte("user_sale") // sale id, "\x00", user id → units held + bought
)

// migrateLayout3 moves a file with carts and user_sale (the layouts before the third)
// to the third, in OpenBolt's transaction: both buckets are dropped, as the writer
// keeps carts and per-user counts in memory, rebuilt on open from holds and the orders
// (bolt_holds.go). A hold record already names its cart entry (CartKey, whose
// sequence is the carts bucket's); the holds bucket's sequence, which numbers the new
// holds' cart keys, continues it, so a cart keeps its order. A file without them is
// left alone.
func migrateLayout3(tx *bolt.Tx) error {
	if carts := tx.Bucket(bucketCarts); carts != nil {
		holds := tx.Bucket(bucketHolds)
		if err := holds.SetSequence(max(holds.Sequence(), carts.Sequence())); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketCarts); err != nil {
			return err
		}
	}
	if tx.Bucket(bucketUserSale) != nil {
		return tx.DeleteBucket(bucketUserSale)
	}
	return nil
}

// migrateLayout2 moves a file of the second layout (until 2026-12-02, main at 61c863d:
// idempotency records in users, under userKey(user, 'i', key), and idem_expiry entries
// without a value) to this one, in OpenBolt's transaction: every record becomes the
// value of its idem_expiry entry, made anew from the record's time (as migrateLayout1
// did), and leaves users. The order index stays; order_log (new, empty) continues its
// sequence, so the orders indexed from the log list after the older ones. OpenBolt calls
// it when order_log did not exist (a new file too: nothing to move).
func migrateLayout2(tx *bolt.Tx) error {
	users := tx.Bucket(bucketUsers)
	seq := users.Sequence()
	if err := tx.Bucket(bucketOrderLog).SetSequence(seq); err != nil {
		return err
	}
	type kv struct{ k, v []byte }
	var keep, exp []kv // users' order index entries; the new idem_expiry entries
	err := users.ForEach(func(k, v []byte) error {
		kind, ok := userKeyKind(k)
		switch {
		case !ok:
			return fmt.Errorf("migrate users: key %q is not a user's", k)
		case kind != kindIdem:
			keep = append(keep, kv{bytes.Clone(k), bytes.Clone(v)})
			return nil
		}
		var rec boltIdem
		if err := unmarshalRecord(v, &rec); err != nil {
			return fmt.Errorf("migrate idem %q: %w", k, err)
		}
		exp = append(exp, kv{timeKey(rec.At, string(k)), bytes.Clone(v)})
		return nil
	})
	if err != nil {
		return err
	}
	// Both buckets are made anew, their entries put in key order: deleting the records
	// one by one from users would be quadratic when users is still one in-memory node
	// (a layout-1 file, moved to the second layout in this transaction).
	putNew := func(name []byte, kvs []kv) (*bolt.Bucket, error) {
		if err := tx.DeleteBucket(name); err != nil {
			return nil, err
		}
		b, err := tx.CreateBucket(name)
		if err != nil {
			return nil, err
		}
		slices.SortFunc(kvs, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
		for _, e := range kvs {
			if err := b.Put(e.k, e.v); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	if users, err = putNew(bucketUsers, keep); err != nil {
		return err
	}
	if err := users.SetSequence(seq); err != nil {
		return err
	}
	_, err = putNew(bucketIdemExpiry, exp)
	return err
}

// userKeyKind returns the kind of a userKey (the byte after the user id).
func userKeyKind(k []byte) (byte, bool) {
	i := bytes.IndexByte(k, ':')
	if i <= 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(k[:i]))
	if err != nil || n < 0 || i+1+n >= len(k) {
		return 0, false
	}
	return k[i+1+n], true
}
