package cart

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Opening the embedded store. An operator expects the server to start, so OpenBolt
// fails only when the file cannot be used at all, and then says what is wrong and what
// to do:
//
//   - the file cannot be opened: another process holds its lock (a livecart still
//     running on the data_dir), no permission, or it is not a bbolt file / its header
//     is damaged (bbolt checks the meta pages' checksums);
//   - a bucket's name is taken by a plain key (not a livecart file);
//   - moving a file of an earlier layout to this one (bolt_migrate.go) meets an entry it
//     cannot move: the move is one transaction, so the file is left as it was, and the
//     version that wrote it still opens it;
//   - bbolt panics walking the file's pages on open (a damaged page: bbolt does not
//     checksum pages).
//
// Everything else open reads is rebuilt from what can be read, in open's transaction
// (repairOnOpen, loadHoldIndex): an entry that cannot be used is logged at error level,
// naming it and what follows from its loss, and taken out where keeping it would stop
// the sweeps or the writer (every later transaction would fail on it). The invariants
// of the counts are left as the file has them (they live in the product and sale
// records, which open does not change), and the per-user limit is never let through
// silently: a buyer whose order of a live sale's stream cannot be read is counted at
// the limit of the stream's live sales.

// OpenBolt opens (creating if needed) the bbolt database file at path, logging what it
// repairs to slog.Default().
func OpenBolt(path string) (*BoltStore, error) { return openBoltLog(path, defaultTuning, nil) }

// OpenBoltLog is OpenBolt logging to log.
func OpenBoltLog(path string, log *slog.Logger) (*BoltStore, error) {
	return openBoltLog(path, defaultTuning, log)
}

// openBolt is OpenBolt with the order log's tuning (tests change it).
func openBolt(path string, tuning boltTuning) (*BoltStore, error) {
	return openBoltLog(path, tuning, nil)
}

func openBoltLog(path string, tuning boltTuning, log *slog.Logger) (*BoltStore, error) {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("store", "embedded", "file", path)
	db, err := openBoltFile(path)
	if err != nil {
		return nil, openFileError(path, err)
	}
	s := &BoltStore{db: db, writes: make(chan *groupCall), quit: make(chan struct{}), writerDone: make(chan struct{}),
		tuning: tuning, hasher: newIdemHasher(), log: log}
	if err := db.Update(func(tx *bolt.Tx) error { return s.load(tx, path, log) }); err != nil {
		db.Close()
		return nil, err
	}
	go s.writeLoop()
	return s, nil
}

// openBoltFile opens the file with bbolt. bbolt walks every page on open (the free
// list is not stored, NoFreelistSync) and panics on one it cannot parse: that is an
// error here, naming the damage.
func openBoltFile(path string) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("embedded store %s: the file is damaged (bbolt: %v): restore it from a backup (`bbolt check` names the damaged pages)", path, p)
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
}

// openFileError says why bbolt could not open the file, and what to do.
func openFileError(path string, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("embedded store %s: another process holds the file's lock (is a livecart still running on this data_dir?); waited 5 s: stop it, or give this node its own data_dir: %w", path, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return fmt.Errorf("embedded store %s: not a livecart database, or its header is damaged: restore it from a backup, or move it away to start with an empty store: %w", path, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("embedded store %s: the file and its directory must be readable and writable by the user livecart runs as: %w", path, err)
	}
	return fmt.Errorf("embedded store %s: %w", path, err)
}

// load makes the buckets, moves an earlier layout to this one, repairs what open can do
// without, and reads the writer's in-memory indexes, in open's transaction.
func (s *BoltStore) load(tx *bolt.Tx, path string, log *slog.Logger) (err error) {
	layout2 := tx.Bucket(bucketOrderLog) == nil // or a new file
	for _, b := range append([][]byte{bucketStreams, bucketAudit, bucketMute, bucketOrigin, bucketOrderLog, bucketWriter, bucketLiveSeq, bucketChatMute}, commerceBuckets...) {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("embedded store %s: not a livecart database (bucket %s: %w): restore it from a backup, or move it away to start with an empty store", path, b, err)
		}
	}
	if err := migrate(tx, layout2); err != nil {
		return fmt.Errorf("embedded store %s: moving the file to this version's layout failed, and nothing was changed (the move is one transaction): %w; start the livecart version that wrote it, or restore a backup", path, err)
	}
	if err := repairOnOpen(tx, log); err != nil {
		return fmt.Errorf("embedded store %s: repairing: %w", path, err)
	}
	if err := migrateLiveSalesFrom(tx); err != nil {
		return fmt.Errorf("embedded store %s: %w", path, err)
	}
	var short [][]byte
	s.idem, short = loadIdemIndex(tx, s.hasher)
	for _, k := range short { // the sweep reads the time from the key's first 8 bytes
		log.Error("embedded store: removed an expiry entry without its time", "bucket", string(bucketIdemExpiry), "key", fmt.Sprintf("%q", k))
		if err := tx.Bucket(bucketIdemExpiry).Delete(k); err != nil {
			return err
		}
	}
	if s.logged, s.unindexed, err = loadOrderLog(tx); err != nil {
		return fmt.Errorf("embedded store %s: %w", path, err) // repairOnOpen took the bad entries out
	}
	holds, err := rebuildHoldIndex(tx, log)
	if err != nil {
		return fmt.Errorf("embedded store %s: %w", path, err)
	}
	if err := repairHoldExpiry(tx, log, holds); err != nil {
		return fmt.Errorf("embedded store %s: repairing: %w", path, err)
	}
	if err := restoreHoldExpiry(tx, log, holds); err != nil {
		return fmt.Errorf("embedded store %s: repairing: %w", path, err)
	}
	s.setHoldIndex(holds)
	return nil
}

// repairHoldExpiry takes out, in open's transaction, each hold_expiry entry the hold
// sweep would stop on for good (it releases in expiry order: one it cannot release
// stops it), logging each at error level: a key shorter than its time (the sweep reads
// the time from its first 8 bytes), one whose hold record is missing or unreadable,
// or whose hold names a sale whose record is missing or unreadable, or an ended sale or
// (a hold of no sale) a product whose product record is (the release returns the units
// to the product). Such a hold's
// units stay held. ix is what rebuildHoldIndex read of the holds: the entries are
// checked against it, a hold is decoded again only if a sale of the holds is damaged.
func repairHoldExpiry(tx *bolt.Tx, log *slog.Logger, ix holdIndex) error {
	exp := tx.Bucket(bucketHoldExpiry)
	badSales, badProducts := map[string]error{}, map[string]error{}
	for id := range ix.holdSales {
		var sale Sale
		if err := getJSON(tx.Bucket(bucketSales), id, &sale); err != nil {
			badSales[id] = err
		} else if sale.Status == SaleEnded { // a release returns the units to the product
			var p Product
			if err := getJSON(tx.Bucket(bucketProducts), sale.ProductID, &p); err != nil {
				badSales[id] = fmt.Errorf("its sale's product %s: %w", sale.ProductID, err)
			}
		}
	}
	for id := range ix.holdProducts {
		var p Product
		if err := getJSON(tx.Bucket(bucketProducts), id, &p); err != nil {
			badProducts[id] = err
		}
	}
	var dels [][]byte
	hc := tx.Bucket(bucketHolds).Cursor() // one cursor: Bucket.Get makes one per call
	exp.ForEach(func(k, _ []byte) error {
		var err error
		switch {
		case len(k) < 8:
			log.Error("embedded store: removed an expiry entry without its time", "bucket", string(bucketHoldExpiry), "key", fmt.Sprintf("%q", k))
			dels = append(dels, bytes.Clone(k))
			return nil
		case ix.unreadable[string(k[8:])] != nil:
			err = ix.unreadable[string(k[8:])]
		case !keyAt(hc, k[8:]):
			err = ErrNotFound
		case len(badSales) > 0 || len(badProducts) > 0:
			var h boltHold
			if err = getJSON(tx.Bucket(bucketHolds), string(k[8:]), &h); err == nil && h.SaleID != "" && badSales[h.SaleID] != nil {
				err = fmt.Errorf("its sale %s: %w", h.SaleID, badSales[h.SaleID])
			} else if err == nil && h.SaleID == "" && badProducts[h.ProductID] != nil {
				err = fmt.Errorf("its product %s: %w", h.ProductID, badProducts[h.ProductID])
			}
		}
		if err != nil {
			log.Error("embedded store: a hold cannot be read: the hold sweep no longer releases it, its units stay held",
				"hold", string(k[8:]), "err", err)
			dels = append(dels, bytes.Clone(k))
		}
		return nil
	})
	for _, k := range dels {
		if err := exp.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// migrate moves a file of an earlier layout to this one (bolt_migrate.go).
func migrate(tx *bolt.Tx, layout2 bool) error {
	if err := migrateLayout1(tx); err != nil {
		return err
	}
	if layout2 {
		if err := migrateLayout2(tx); err != nil {
			return err
		}
	}
	return migrateLayout3(tx)
}

// repairOnOpen moves, in open's transaction, the order_log entries that would stop the
// writer for good (every transaction that indexes the log from its start would fail on
// one), logging each at error level: repairOrderLog keeps each, never deletes it.
//
// It only logs a live_sales entry whose sale record is missing or unreadable: the
// entry stays (the sale sweep and rebuildHoldIndex skip it), so that the sale is live
// again once its record is restored. Nothing can be held in it meanwhile (a hold reads
// the record), and its remaining units are not returned to the product.
//
// repairHoldExpiry takes out the hold_expiry entries the hold sweep would stop on, once
// the holds are read.
func repairOnOpen(tx *bolt.Tx, log *slog.Logger) error {
	if err := repairOrderLog(tx, log); err != nil {
		return err
	}
	// A live sale whose record cannot be read stays in live_sales (the sale sweep and
	// the rebuild skip it): taken out, a record restored from a backup (or written by a
	// newer version) would be a sale the sweep never ends and whose buyers' units the
	// per-user limit no longer counts.
	return tx.Bucket(bucketLiveSales).ForEach(func(k, _ []byte) error {
		var sale Sale
		if err := getJSON(tx.Bucket(bucketSales), string(k), &sale); err != nil {
			log.Error("embedded store: a live sale's record cannot be read: the sale sweep skips it (it is not ended, its remaining units are not returned to its product) and nothing can be held in it; restore its record from a backup",
				"sale", string(k), "err", err)
		}
		return nil
	})
}

// bucketOrderLogUnreadable keeps the order_log entries open could not read, as they
// were: key the bucket's sequence (8 bytes BE), value uvarint len(key), the entry's
// key, its value. Made only when open meets one.
var bucketOrderLogUnreadable = []byte("order_log_unreadable")

// repairOrderLog moves, in open's transaction, each order_log entry the writer's
// indexing would fail on, logging each at error level; none is deleted, since the
// entry may be the only place that names an acknowledged order's buyer:
//
//   - one whose key is no sequence but whose value names an order of that buyer (its
//     record says so) is put back at the log's end under a new sequence: its buyer's
//     GET /api/orders lists it again (last);
//   - any other (a value of an unknown format, or naming no such order of the buyer)
//     is kept as it was in order_log_unreadable: its order stays in orders and its
//     stream's list, but not in its buyer's list, until someone restores the entry.
func repairOrderLog(tx *bolt.Tx, log *slog.Logger) error {
	type entry struct{ k, v []byte }
	var bad []entry
	ol := tx.Bucket(bucketOrderLog)
	ol.ForEach(func(k, v []byte) error {
		if _, _, err := splitOrderLog(v); err != nil || len(k) != 8 {
			bad = append(bad, entry{bytes.Clone(k), bytes.Clone(v)})
		}
		return nil
	})
	for _, e := range bad {
		if err := ol.Delete(e.k); err != nil {
			return err
		}
		if oid, uid, ok := orderLogOfBuyer(tx, e.v); ok {
			seq, err := ol.NextSequence()
			if err != nil {
				return err
			}
			log.Error("embedded store: an order_log entry's key is no sequence: put back at the log's end (its buyer's GET /api/orders lists the order last)",
				"key", fmt.Sprintf("%x", e.k), "order", oid, "buyer", uid)
			if err := ol.Put(binary.BigEndian.AppendUint64(nil, seq), e.v); err != nil {
				return err
			}
			continue
		}
		kept, err := tx.CreateBucketIfNotExists(bucketOrderLogUnreadable)
		if err != nil {
			return err
		}
		seq, err := kept.NextSequence()
		if err != nil {
			return err
		}
		log.Error("embedded store: an order_log entry cannot be read: kept as it is in bucket order_log_unreadable; its order (in orders and its stream's list) is not listed in its buyer's GET /api/orders until the entry is restored",
			"key", fmt.Sprintf("%x", e.k), "value", fmt.Sprintf("%q", e.v))
		v := binary.AppendUvarint(nil, uint64(len(e.k)))
		if err := kept.Put(binary.BigEndian.AppendUint64(nil, seq), append(append(v, e.k...), e.v...)); err != nil {
			return err
		}
	}
	return nil
}

// orderLogOfBuyer says whether an order_log value names an order whose record can be
// read and is of the buyer it names, and not yet in the buyer's order index.
func orderLogOfBuyer(tx *bolt.Tx, v []byte) (orderID, userID string, ok bool) {
	oid, uid, err := splitOrderLog(v)
	if err != nil {
		return "", "", false
	}
	var o Order
	if getJSON(tx.Bucket(bucketOrders), string(oid), &o) != nil || o.UserID != string(uid) {
		return "", "", false
	}
	for _, id := range prefixValues(tx.Bucket(bucketUsers), userKey(o.UserID, kindOrder, "")) {
		if id == o.ID {
			return "", "", false
		}
	}
	return o.ID, o.UserID, true
}

// keyAt says whether the cursor's bucket has the key k.
func keyAt(c *bolt.Cursor, k []byte) bool {
	found, _ := c.Seek(k)
	return bytes.Equal(found, k)
}

// liveSaleFrom is a live_sales value: the first stream_orders sequence an order of the
// sale can have (the bucket's next sequence when the sale was made). Open reads the
// orders of the live sales' streams from there (rebuildHoldIndex), not the streams'
// whole history.
func liveSaleFrom(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// migrateLiveSalesFrom gives each live_sales entry of a file written before its value
// was kept (empty) that value: the sequence of the sale's stream's first order that
// has an item of the sale, or that cannot be read (it may have one), or the next
// sequence if there is none.
func migrateLiveSalesFrom(tx *bolt.Tx) error {
	live, so := tx.Bucket(bucketLiveSales), tx.Bucket(bucketStreamOrders)
	var old [][]byte
	live.ForEach(func(k, v []byte) error {
		if len(v) != 8 {
			old = append(old, bytes.Clone(k))
		}
		return nil
	})
	for _, id := range old {
		var sale Sale
		if err := getJSON(tx.Bucket(bucketSales), string(id), &sale); err != nil {
			continue // logged by repairOnOpen; given its value on the open that reads it
		}
		from := so.Sequence() + 1
		prefix := []byte(sale.StreamID + "\x00")
		c := so.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var o Order
			err := getJSON(tx.Bucket(bucketOrders), string(v), &o)
			if err == nil && !o.hasSale(sale.ID) {
				continue
			}
			if seq, ok := indexSeq(k); ok {
				from = seq
			} else {
				from = 0
			}
			break
		}
		if err := live.Put(id, liveSaleFrom(from)); err != nil {
			return err
		}
	}
	return nil
}

func (o Order) hasSale(id string) bool {
	for _, it := range o.Items {
		if it.SaleID == id {
			return true
		}
	}
	return false
}

// indexSeq reads the sequence at the end of an index key (appendSeqHex).
func indexSeq(k []byte) (uint64, bool) {
	if len(k) < 16 {
		return 0, false
	}
	var seq uint64
	for _, c := range k[len(k)-16:] {
		switch {
		case c >= '0' && c <= '9':
			seq = seq<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			seq = seq<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return seq, true
}

// orderBuyer finds the buyer of an order whose record cannot be read: in order_log or
// in users' index (a scan of both; only for a damaged file).
func orderBuyer(tx *bolt.Tx, orderID string) (string, bool) {
	var user string
	found := errors.New("found")
	tx.Bucket(bucketOrderLog).ForEach(func(_, v []byte) error {
		if oid, uid, err := splitOrderLog(v); err == nil && string(oid) == orderID {
			user = string(uid)
			return found
		}
		return nil
	})
	if user != "" {
		return user, true
	}
	tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
		if string(v) == orderID {
			if u, ok := userOfKey(k); ok {
				user = u
				return found
			}
		}
		return nil
	})
	return user, user != ""
}

// userOfKey returns the user of a userKey.
func userOfKey(k []byte) (string, bool) {
	i := bytes.IndexByte(k, ':')
	if i <= 0 {
		return "", false
	}
	var n int
	for _, c := range k[:i] {
		if c < '0' || c > '9' {
			return "", false
		}
		n = n*10 + int(c-'0')
		if n > len(k) {
			return "", false
		}
	}
	if i+1+n > len(k) {
		return "", false
	}
	return string(k[i+1 : i+1+n]), true
}

// restoreHoldExpiry puts back, in open's transaction, the hold_expiry entry of each
// unreleased hold that has none (an earlier open took it out: the hold, its sale or its
// product could not be read) once the sweep can release it again (the records it reads
// were restored), logging each at error level. A file no open repaired has none such:
// a hold's entry goes only when it is released (Released) or its record is deleted.
//
// A restored hold of a sale that puts its buyer over the sale's per-user limit (while
// its record could not be read, nor its buyer, the buyer was counted without it and
// could hold or buy the limit again) is put back expired (overLimitExpiry): its units go
// back with the next sweep, it stays listed as expired and cannot be checked out, so
// that the buyer never gets more than the limit. ix is what rebuildHoldIndex read: its units
// count the restored holds of live sales. An ended sale's holds stay valid until they
// expire or are bought at the sale's price, so a restored one is checked too; ix does
// not count ended sales, so its buyer's units are counted here (endedSaleUnits), and
// the units of one put back expired go back to the product with the sweep, as those of
// any of an ended sale's holds that expire.
func restoreHoldExpiry(tx *bolt.Tx, log *slog.Logger, ix holdIndex) error {
	expired := map[saleUser]int{} // units of restored holds expired here, by sale and buyer
	ended := map[saleUser]int{}   // units of ended sales, by sale and buyer (endedSaleUnits)
	for _, h := range ix.noExpiry {
		var sale Sale
		var p Product
		switch {
		case h.SaleID != "" && getJSON(tx.Bucket(bucketSales), h.SaleID, &sale) != nil:
			continue
		case h.SaleID != "" && sale.Status == SaleEnded && getJSON(tx.Bucket(bucketProducts), sale.ProductID, &p) != nil:
			continue
		case h.SaleID == "" && getJSON(tx.Bucket(bucketProducts), h.ProductID, &p) != nil:
			continue
		}
		k := saleUser{h.SaleID, h.User}
		units := 0
		switch {
		case h.SaleID == "":
		case sale.Status == SaleEnded:
			if _, ok := ended[k]; !ok {
				ended[k] = endedSaleUnits(tx, ix, sale, h.User)
			}
			units = ended[k]
		default:
			units = ix.units[h.SaleID][h.User]
		}
		if h.SaleID != "" && units-expired[k] > sale.PerUserLimit {
			units -= expired[k]
			h.ExpiresAt = overLimitExpiry(h, sale)
			expired[k] += h.Quantity
			log.Error("embedded store: put back a hold whose record can be read again, expired: with it its buyer would hold more than the sale's per-user limit (the buyer held or bought more while it could not be read); the hold sweep returns its units",
				"hold", h.ID, "sale", h.SaleID, "buyer", h.User, "units", units, "limit", sale.PerUserLimit, "sale_status", sale.Status)
			if err := putJSON(tx.Bucket(bucketHolds), h.ID, &h); err != nil {
				return err
			}
		} else {
			log.Error("embedded store: put back a hold's expiry entry (an earlier start took it out, its records can be read again): the hold sweep releases it again",
				"hold", h.ID)
		}
		if err := tx.Bucket(bucketHoldExpiry).Put(timeKey(h.ExpiresAt, h.ID), nil); err != nil {
			return err
		}
	}
	return nil
}

// endedSaleUnits counts the units of an ended sale its buyer holds (unreleased holds,
// a restored one too) and bought, as rebuildHoldIndex counts a live sale's: a hold
// record that cannot be read counts what can be read of it (its quantity, or its buyer
// at the limit: countUnreadableHold), an order of the sale's stream that cannot be
// read counts its buyer at the limit if she can be found. Only a restore at open asks
// (rarely): it reads the buyer's holds and the stream's orders.
func endedSaleUnits(tx *bolt.Tx, ix holdIndex, sale Sale, user string) int {
	n, atLimit := 0, false
	holds := tx.Bucket(bucketHolds)
	for _, e := range ix.carts[user] {
		var h boltHold
		if getJSON(holds, e.id, &h) == nil && h.SaleID == sale.ID && !h.Released {
			n += h.Quantity
		}
	}
	for id := range ix.unreadable {
		u, sid, q, released, ok := salvageHold(holds.Get([]byte(id)))
		if ok && u == user && sid == sale.ID && !released {
			n += q
			atLimit = atLimit || q <= 0
		}
	}
	prefix := []byte(sale.StreamID + "\x00")
	c := tx.Bucket(bucketStreamOrders).Cursor()
	for k, id := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, id = c.Next() {
		var o Order
		if err := getJSON(tx.Bucket(bucketOrders), string(id), &o); err != nil {
			if buyer, ok := orderBuyer(tx, string(id)); ok && buyer == user {
				atLimit = true
			}
			continue
		}
		for _, it := range o.Items {
			if o.UserID == user && it.SaleID == sale.ID {
				n += it.Quantity
			}
		}
	}
	if atLimit {
		n = max(n, sale.PerUserLimit)
	}
	return n
}

// overLimitExpiry is the expiry a restored hold over its buyer's limit is put back with
// (restoreHoldExpiry): a time already past, so that the sweep releases it and a
// checkout finds it expired: when its sale started (the hold was made later), or its
// own expiry if that is earlier.
func overLimitExpiry(h boltHold, sale Sale) time.Time {
	if h.ExpiresAt.Before(sale.StartsAt) {
		return h.ExpiresAt
	}
	return sale.StartsAt
}
