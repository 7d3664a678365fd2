package cart

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// A checkout writes no user-keyed page. Its two per-buyer entries used to go to users
// under the buyer's prefix, a random leaf per checkout that each group commit split and
// wrote (≈ 3/4 of a storm's page writes, docs/BENCHMARKS.md). Now:
//
//   - The idempotency record is the value of its idem_expiry entry, keyed by its time,
//     so it is appended. The store keeps in memory which keys exist and when each was
//     made (BoltStore.idem: the key of its idem_expiry entry), rebuilt on open from
//     idem_expiry (at most 24 h of keys and what the sweep has not yet reached); the
//     sweep deletes the entry and forgets the key.
//   - The order is appended to order_log (a global sequence). The writer moves the log
//     into users' order index (userKey(user, 'o', seq) → order id, the log's sequence
//     kept, so a user's orders stay oldest first) in large batches, sorted by key: once
//     the log holds indexBatch orders, in that group's transaction, and when the writer
//     has been idle for indexIdle (boltTuning). Moving an entry deletes it from the log
//     in the same transaction, so an order is always in exactly one of them, and
//     ListOrders reads both: a buyer sees their order right after checkout. The log's
//     part it takes from a copy of the log by user the store keeps in memory
//     (BoltStore.logged, rebuilt on open), not by reading the whole log.
var bucketOrderLog = []byte("order_log") // seq (8 bytes BE) → uvarint len(order id), order id, user id

// maxIndexPass bounds the orders one transaction indexes (defaultTuning: when).
const maxIndexPass = 16384

// idemSum is the in-memory index's key for an idempotency key: two 64-bit seeded
// hashes of userKey(user, 'i', key), not the key itself. The index holds every key of
// the last 24 h (7.2 million at 5,000 checkouts a minute): as strings (≥ 76 bytes for
// a UUID user and key, up to 255 for the key) it took ~110–140 bytes a key, ~0.9 GB;
// as 16 bytes, ~30–55. The seeds are the store's, made on open (the index is rebuilt
// then); two different keys agreeing on 128 seeded bits is not to be expected
// (≈ 10⁻²⁵ for 7.2 million keys).
type idemSum [2]uint64

// idemHasher hashes idempotency keys for one store's index.
type idemHasher struct{ a, b maphash.Seed }

func newIdemHasher() idemHasher { return idemHasher{maphash.MakeSeed(), maphash.MakeSeed()} }

func (h idemHasher) sum(k []byte) idemSum {
	return idemSum{maphash.Bytes(h.a, k), maphash.Bytes(h.b, k)}
}

// idemRef is a group's change to the store's idempotency index: the key exists with
// its idem_expiry entry at time at (ok), or is forgotten (!ok).
type idemRef struct {
	at int64
	ok bool
}

// idemAt returns when the idempotency key was made (the time of its idem_expiry
// entry), as this group sees it.
func (g *groupTx) idemAt(k []byte) (int64, bool) {
	h := g.hasher.sum(k)
	if r, ok := g.idem[h]; ok {
		return r.at, r.ok
	}
	at, ok := g.base[h]
	return at, ok
}

// setIdem records a change of the index, applied to the store's once the group commits.
func (g *groupTx) setIdem(k []byte, at int64, ok bool) {
	if g.idem == nil {
		g.idem = map[idemSum]idemRef{}
	}
	g.idem[g.hasher.sum(k)] = idemRef{at, ok}
}

// applyIdem applies a committed group's changes to the store's index.
func applyIdem(base map[idemSum]int64, changes map[idemSum]idemRef) {
	for k, r := range changes {
		if r.ok {
			base[k] = r.at
		} else {
			delete(base, k)
		}
	}
}

// loadIdemIndex reads the idempotency index from idem_expiry, and the keys too short
// to hold a time (none but in a damaged file; open removes them).
func loadIdemIndex(tx *bolt.Tx, h idemHasher) (map[idemSum]int64, [][]byte) {
	idem := map[idemSum]int64{}
	var short [][]byte
	tx.Bucket(bucketIdemExpiry).ForEach(func(k, _ []byte) error {
		if len(k) >= 8 {
			idem[h.sum(k[8:])] = int64(binary.BigEndian.Uint64(k))
		} else {
			short = append(short, bytes.Clone(k))
		}
		return nil
	})
	return idem, short
}

// idemRecord returns the idempotency record of key made at at (from the index).
func (t *boltTx) idemRecord(key []byte, at int64) (boltIdem, error) {
	var rec boltIdem
	err := t.getRecAt(bucketIdemExpiry, t.idemTimeKey(at, key), &rec)
	return rec, err
}

// putIdemRecord stores the idempotency record of key as the value of its idem_expiry
// entry and adds the key to the index.
func (t *boltTx) putIdemRecord(key []byte, rec boltIdem) error {
	raw, err := t.record(&rec)
	if err != nil {
		return err
	}
	at := rec.At.UnixNano()
	if err := t.b(bucketIdemExpiry).Put(t.idemTimeKey(at, key), raw); err != nil {
		return err
	}
	t.group.setIdem(key, at, true)
	return nil
}

// forgetIdem deletes the idempotency record of key made at at and forgets the key.
func (t *boltTx) forgetIdem(key []byte, at int64) error {
	if err := t.del(bucketIdemExpiry, t.idemTimeKey(at, key)); err != nil {
		return err
	}
	if cur, ok := t.group.idemAt(key); ok && cur == at {
		t.group.setIdem(key, 0, false)
	}
	return nil
}

// logOrder appends a new order to order_log.
func (t *boltTx) logOrder(orderID, userID string) error {
	b := t.b(bucketOrderLog)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	start := t.sc.room()
	v := binary.AppendUvarint(t.sc.vals, uint64(len(orderID)))
	v = t.sc.cut(append(append(v, orderID...), userID...), start)
	t.sc.key = binary.BigEndian.AppendUint64(t.sc.key[:0], seq)
	if err := b.Put(t.sc.key, v); err != nil {
		return err
	}
	t.group.logged = append(t.group.logged, loggedOrder{userID, orderRef{seq, orderID}})
	return nil
}

// orderRef is an order in order_log: its sequence and id.
type orderRef struct {
	seq uint64
	id  string
}

// loggedOrder is an order a group appended to order_log.
type loggedOrder struct {
	user string
	orderRef
}

// indexedOrders says which orders a transaction moved from order_log to users' index:
// n of them, every one up to the sequence upTo, of these users.
type indexedOrders struct {
	n     int
	upTo  uint64
	users []string
}

// applyLog applies a committed transaction's changes of order_log to the store's
// copy (logged) and count (unindexed): the orders added, then those indexed.
func (s *BoltStore) applyLog(added []loggedOrder, indexed indexedOrders) {
	if len(added) == 0 && indexed.n == 0 {
		return
	}
	s.loggedMu.Lock()
	defer s.loggedMu.Unlock()
	for _, o := range added {
		s.logged[o.user] = append(s.logged[o.user], o.orderRef)
	}
	for _, u := range indexed.users {
		refs := s.logged[u]
		i := 0
		for i < len(refs) && refs[i].seq <= indexed.upTo {
			i++
		}
		if i == len(refs) {
			delete(s.logged, u)
		} else {
			s.logged[u] = refs[i:]
		}
	}
	s.unindexed = max(s.unindexed+len(added)-indexed.n, 0)
}

// loadOrderLog reads the copy of order_log by user and counts its orders (on open).
func loadOrderLog(tx *bolt.Tx) (map[string][]orderRef, int, error) {
	logged, n := map[string][]orderRef{}, 0
	err := tx.Bucket(bucketOrderLog).ForEach(func(k, v []byte) error {
		oid, uid, err := splitOrderLog(v)
		if err != nil {
			return err
		}
		if len(k) != 8 {
			return fmt.Errorf("order_log: bad key %q", k)
		}
		logged[string(uid)] = append(logged[string(uid)], orderRef{binary.BigEndian.Uint64(k), string(oid)})
		n++
		return nil
	})
	return logged, n, err
}

// splitOrderLog splits a value of order_log into the order id and the user id.
func splitOrderLog(v []byte) (orderID, userID []byte, err error) {
	n, w := binary.Uvarint(v)
	if w <= 0 || uint64(len(v)-w) < n {
		return nil, nil, fmt.Errorf("order_log: bad entry %q", v)
	}
	return v[w : w+int(n)], v[w+int(n):], nil
}

// viewUserOrders runs fn in a read transaction with the user's orders of order_log in
// it, oldest first (none indexed in the transaction). The copy is read and the
// transaction begun under loggedMu's read lock: every order in the copy then committed
// before the transaction began, and an order the writer has indexed but not yet
// dropped from the copy is in the transaction's index, not in its log (the log is
// indexed from its start, so those are the copy's orders before the log's first).
func (s *BoltStore) viewUserOrders(userID string, fn func(tx *bolt.Tx, logged []string) error) error {
	s.loggedMu.RLock()
	tx, err := s.db.Begin(false)
	refs := slices.Clone(s.logged[userID])
	s.loggedMu.RUnlock()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	ids := []string{}
	if first, _ := tx.Bucket(bucketOrderLog).Cursor().First(); len(first) == 8 {
		from := binary.BigEndian.Uint64(first)
		for _, r := range refs {
			if r.seq >= from {
				ids = append(ids, r.id)
			}
		}
	}
	return fn(tx, ids)
}

// indexOrders moves up to max orders from the start of order_log into users' order
// index, in the caller's transaction, and says which it moved. The entries are put in
// key order (bbolt keeps a bucket's new entries in one in-memory node per leaf until
// the commit: puts in order append to it).
func indexOrders(tx *bolt.Tx, max int) (indexedOrders, error) {
	log, users := tx.Bucket(bucketOrderLog), tx.Bucket(bucketUsers)
	type kv struct{ k, v []byte }
	var (
		kvs  []kv
		seqs [][]byte
		out  indexedOrders
	)
	c := log.Cursor()
	for k, v := c.First(); k != nil && len(kvs) < max; k, v = c.Next() {
		oid, uid, err := splitOrderLog(v)
		if err != nil {
			return indexedOrders{}, err
		}
		if len(k) != 8 {
			return indexedOrders{}, fmt.Errorf("order_log: bad key %q", k)
		}
		user := string(uid)
		out.upTo = binary.BigEndian.Uint64(k)
		out.users = append(out.users, user)
		kvs = append(kvs, kv{appendSeqHex(userKey(user, kindOrder, ""), out.upTo), bytes.Clone(oid)})
		seqs = append(seqs, bytes.Clone(k))
	}
	slices.SortFunc(kvs, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	for _, e := range kvs {
		if err := users.Put(e.k, e.v); err != nil {
			return indexedOrders{}, err
		}
	}
	for _, k := range seqs {
		if err := log.Delete(k); err != nil {
			return indexedOrders{}, err
		}
	}
	out.n = len(kvs)
	return out, nil
}

// indexWhenIdle indexes the whole order log in transactions of its own (the writer,
// idle for indexIdle).
func (s *BoltStore) indexWhenIdle() {
	for s.unindexed > 0 {
		var done indexedOrders
		landed, err := s.writerUpdate(func(tx *bolt.Tx) error {
			var err error
			done, err = indexOrders(tx, maxIndexPass)
			return err
		})
		if landed {
			s.applyLog(nil, done)
		}
		switch {
		case err != nil:
			return // left in the log, where ListOrders reads it; the next idle time tries again
		case done.n == 0:
			s.unindexed = 0
			return
		}
	}
}

var errNoGroup = errors.New("bolt: checkout outside a group transaction")
