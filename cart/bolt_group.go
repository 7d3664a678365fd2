package cart

import (
	"errors"
	"runtime"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Group commit for the embedded store. bbolt's own Batch closes a batch on a timer, so
// under a storm batches queue one behind another on the write lock, each paying its
// own fsync for a few callers. Here one writer goroutine takes every call that is
// waiting whenever it is free, runs them in one transaction and commits once: the
// group is what arrived during the previous commit (and, for a small group, while the
// writer yielded to the goroutines ready to run, see groupYieldMin), a lone call
// commits at once (no timer), and no call is acknowledged before its fsync.

// maxGroup bounds one transaction (its dirty pages stay in memory until commit).
const maxGroup = 2000

// groupYieldMin: a group of fewer calls makes the writer yield (runtime.Gosched), at
// most groupYields times, and take the calls sent meanwhile before it commits. Under a
// storm the goroutines ready to run are requests on their way to the store: they run
// first and join this group instead of waiting for the next, so each transaction,
// page write and fsync serves more calls (a 1,000-buyer sale storm's groups ~76 → ~112
// calls, 5,000 buyers ~107 → ~146). With nothing else ready to run, a yield returns at
// once: a lone call is not delayed (no timer).
const (
	groupYieldMin = 64
	groupYields   = 2
)

var errClosed = errors.New("store closed")

type groupCall struct {
	fn   func(*groupTx) error
	done chan error
}

// groupTx is one group's transaction. Its calls share the products and sales they
// load: a storm on one sale decodes the sale once per group and writes it once, at
// the end of the group, instead of once per call.
type groupTx struct {
	tx       *bolt.Tx
	products map[string]*Product
	sales    map[string]*Sale
	dirty    []dirtyKey // each once, in the order first touched
	isDirty  map[dirtyKey]bool
	sc       txScratch
	// The idempotency index (bolt_index.go): the store's, read only, and this group's
	// changes to it, applied once the group has committed.
	base   map[idemSum]int64
	idem   map[idemSum]idemRef
	hasher idemHasher
	// Orders this group appended to order_log, and moved from it to users' index.
	logged  []loggedOrder
	indexed indexedOrders
	// The carts and units of the live sales (bolt_holds.go): the store's, read only,
	// and this group's changes to them, applied once the group has committed.
	carts map[string][]cartEntry
	units map[string]map[string]int
	hc    holdChanges
	// call is the boltTx of the call running (groupFn): reset for each call, its dirty
	// list's array reused (changes copies what it lists).
	call boltTx
}

func newGroupTx(tx *bolt.Tx, idem map[idemSum]int64, h idemHasher) *groupTx {
	for _, name := range appendBuckets {
		tx.Bucket(name).FillPercent = appendFill
	}
	return &groupTx{tx: tx, products: map[string]*Product{}, sales: map[string]*Sale{}, isDirty: map[dirtyKey]bool{},
		sc: txScratch{cursors: map[string]*bolt.Cursor{}}, base: idem, hasher: h}
}

// appendBuckets are keyed by time (UUIDv7 ids, expiry times) or by a sequence after a
// prefix, so inserts land at the right edge of the bucket or of the prefix's range: a
// split there fills the left page to appendFill instead of bbolt's default half, so a
// group writes fewer and fuller pages and the file stays smaller.
var appendBuckets = [][]byte{bucketHolds, bucketOrders, bucketStreamOrders, bucketHoldExpiry, bucketIdemExpiry, bucketOrderLog}

const appendFill = 0.9

func (g *groupTx) markDirty(k dirtyKey) {
	if !g.isDirty[k] {
		g.isDirty[k] = true
		g.dirty = append(g.dirty, k)
	}
}

// flush writes the group's changed products and sales.
func (g *groupTx) flush() error {
	for _, d := range g.dirty {
		var err error
		if d.kind == 'p' {
			err = putJSON(g.tx.Bucket(bucketProducts), d.id, g.products[d.id])
		} else {
			err = putJSON(g.tx.Bucket(bucketSales), d.id, g.sales[d.id])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// group runs fn in the next group transaction and returns once it is durable (nil) or
// failed.
func (s *BoltStore) group(fn func(*groupTx) error) error {
	c := groupCalls.Get().(*groupCall)
	c.fn = fn
	err := errClosed
	select {
	case s.writes <- c:
		err = <-c.done
	case <-s.quit:
	}
	c.fn = nil
	groupCalls.Put(c)
	return err
}

// groupCalls are calls with their done channel, reused: the writer sends on a call's
// done channel exactly once and does not touch the call after that send, so once its
// caller has received, the call is free.
var groupCalls = sync.Pool{New: func() any { return &groupCall{done: make(chan error, 1)} }}

// writeLoop is the one writer goroutine; it ends when the store is closed. Idle for
// tuning.indexIdle with orders in order_log, it indexes them.
func (s *BoltStore) writeLoop() {
	defer close(s.writerDone)
	batch := make([]*groupCall, 0, 64)
	idle := time.NewTimer(s.tuning.indexIdle)
	defer idle.Stop()
	for {
		var idleC <-chan time.Time
		if s.unindexed > 0 {
			idle.Reset(s.tuning.indexIdle)
			idleC = idle.C
		}
		select {
		case c := <-s.writes:
			batch = append(batch[:0], c)
		case <-idleC:
			s.indexWhenIdle()
			continue
		case <-s.quit:
			return
		}
		for yields := 0; ; yields++ {
			batch = s.takeWaiting(batch)
			if len(batch) >= groupYieldMin || yields == groupYields {
				break
			}
			runtime.Gosched()
		}
		s.commitGroup(batch)
	}
}

// takeWaiting appends to batch every call waiting to be sent now (the writes channel
// is unbuffered: every sender waiting joins the group), up to maxGroup in all.
func (s *BoltStore) takeWaiting(batch []*groupCall) []*groupCall {
	for len(batch) < maxGroup {
		select {
		case c := <-s.writes:
			batch = append(batch, c)
		default:
			return batch
		}
	}
	return batch
}

// commitGroup runs the calls in one transaction. If one call fails, the transaction is
// rolled back, that call gets its error and the others run again without it. When the
// order log holds indexBatch orders, the group's transaction also indexes them.
// commitGroup runs on the writer goroutine only: it owns idem, unindexed, carts and units.
func (s *BoltStore) commitGroup(batch []*groupCall) {
	for len(batch) > 0 {
		failed := -1
		var g *groupTx
		landed, err := s.writerUpdate(func(tx *bolt.Tx) error {
			g = newGroupTx(tx, s.idem, s.hasher)
			g.carts, g.units = s.carts, s.units
			g.sc.vals = s.vals
			for i, c := range batch {
				if err := c.fn(g); err != nil {
					failed = i
					return err
				}
			}
			if err := g.flush(); err != nil {
				return err
			}
			if s.unindexed+len(g.logged) >= s.tuning.indexBatch {
				var err error
				g.indexed, err = indexOrders(tx, maxIndexPass)
				return err
			}
			return nil
		})
		if g != nil {
			s.keepVals(g.sc.vals)
		}
		if landed {
			applyIdem(s.idem, g.idem)
			s.applyLog(g.logged, g.indexed)
			s.applyHolds(g.hc)
		}
		if failed < 0 {
			for _, c := range batch {
				c.done <- err // nil, or the commit's own failure for everyone
			}
			return
		}
		batch[failed].done <- err
		batch = append(batch[:failed:failed], batch[failed+1:]...)
	}
}

// keepVals keeps the value chunk of a group transaction that has ended (committed or
// rolled back) for the next group. bbolt keeps the values a transaction puts (not
// copies) only until the transaction ends: its commit copies them into the pages it
// writes, and nothing else refers to the chunk (the store's own reads copy what they
// decode). So the chunk can be written over by the next group, which saves a group
// its own chunk (valueChunk bytes: a storm's groups of a few dozen calls used a
// fraction of each, ~750 bytes of garbage per hold or checkout). A chunk an append
// grew past valueChunk is not kept.
func (s *BoltStore) keepVals(b []byte) {
	if cap(b) > valueChunk {
		b = nil
	}
	s.vals = b[:0]
}

// After a commit that failed, the writer must know whether it is in the file all the
// same: bbolt reports a failed fdatasync of the meta page after writing it, and the
// transactions after it see that commit (its page is in the file's cache; a
// NoFreelistSync rollback even rebuilds the freelist from that meta). Its changes must
// then be in the in-memory indexes (idempotency keys, order_log's copy, carts and
// units), or a retry with the same key makes a second order and the first is not
// listed. Rereading them all from the file took about a second with 2 million keys
// (docs/BENCHMARKS.md), every call waiting; instead each writer transaction counts
// itself in the sequence of bucketWriter, which only the writer sets, and one read
// after the failure says whether the count landed. bucketWriter holds no entries, so
// it stays inline in the root bucket's page, which every write transaction rewrites:
// the count costs no page.
var bucketWriter = []byte("writer") // no entries; its sequence counts the writer's transactions

// writerUpdate runs fn in a write transaction of the writer. landed says whether the
// transaction is in the file: it committed, or its commit failed after its meta page
// landed.
func (s *BoltStore) writerUpdate(fn func(*bolt.Tx) error) (landed bool, err error) {
	var mark uint64
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		b := tx.Bucket(bucketWriter)
		mark = b.Sequence() + 1
		if err := b.SetSequence(mark); err != nil {
			return err
		}
		if s.commitFaultBefore != nil {
			return s.commitFaultBefore()
		}
		return nil
	})
	if err == nil && s.commitFault != nil {
		err = s.commitFault()
	}
	return err == nil || mark != 0 && s.markLanded(mark), err
}

// markLanded reports whether the writer's transaction counted as mark is in the file
// (false if the file cannot be read: the store is closed).
func (s *BoltStore) markLanded(mark uint64) bool {
	var seq uint64
	s.db.View(func(tx *bolt.Tx) error {
		seq = tx.Bucket(bucketWriter).Sequence()
		return nil
	})
	return seq >= mark
}
