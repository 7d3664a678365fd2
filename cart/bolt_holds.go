package cart

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// A hold writes no user-keyed page (issue #3; the third layout, bolt_migrate.go). A
// user's cart and a buyer's units in a sale (held + bought, the per-user limit's
// count) are kept in memory by the writer, not in buckets keyed by user:
//
//   - the cart is every hold record of the user in holds (a hold is there from
//     HoldUnits until it is removed, checked out or cleared), ordered by its CartKey
//     (userKey(user, 'c', the holds bucket's sequence at the hold), so a cart lists
//     oldest first, as before);
//   - a buyer's units in a scheduled or active sale are the units of the buyer's
//     unreleased holds of the sale plus those of the buyer's orders' items of it.
//
// Both are rebuilt on open from holds, live_sales and the orders of the live sales'
// streams made since the oldest of them was (rebuildHoldIndex); the writer changes them per group (groupTx) and applies
// the changes only once the group has committed, as the idempotency index. The units
// of a sale are dropped from memory when it ends (no hold is taken after that).

// cartEntry is a hold in a user's cart: its CartKey (the cart's order) and id.
type cartEntry struct{ key, id string }

// holdChanges are one group's changes to the carts and the units, applied after its
// commit (applyHolds).
type holdChanges struct {
	added   map[string][]cartEntry // user → holds put in the cart, in order
	dropped map[string]string      // hold id → user: holds taken out of the cart
	units   map[saleUser]int       // units added (or, negative, taken back)
	ended   []string               // sales ended
}

type saleUser struct{ sale, user string }

// any says whether the group changed the carts or units (a transaction that did must
// have them applied if it is in the file, even when its commit reported an error).
func (c holdChanges) any() bool {
	return len(c.added) > 0 || len(c.dropped) > 0 || len(c.units) > 0 || len(c.ended) > 0
}

// cartIDs lists the ids of the holds in the user's cart, oldest first, as the group
// has left it so far.
func (g *groupTx) cartIDs(user string) []string {
	out := []string{}
	for _, lists := range [2][]cartEntry{g.carts[user], g.hc.added[user]} {
		for _, e := range lists {
			if _, gone := g.hc.dropped[e.id]; !gone {
				out = append(out, e.id)
			}
		}
	}
	return out
}

func (g *groupTx) addCart(user string, e cartEntry) {
	if g.hc.added == nil {
		g.hc.added = map[string][]cartEntry{}
	}
	g.hc.added[user] = append(g.hc.added[user], e)
}

func (g *groupTx) dropCart(user, holdID string) {
	if g.hc.dropped == nil {
		g.hc.dropped = map[string]string{}
	}
	g.hc.dropped[holdID] = user
}

// saleUnits is the buyer's units held and bought in the sale, as the group has left
// them so far.
func (g *groupTx) saleUnits(sale, user string) int {
	return g.units[sale][user] + g.hc.units[saleUser{sale, user}]
}

func (g *groupTx) addUnits(sale, user string, n int) {
	if g.hc.units == nil {
		g.hc.units = map[saleUser]int{}
	}
	g.hc.units[saleUser{sale, user}] += n
}

func (g *groupTx) endSale(sale string) { g.hc.ended = append(g.hc.ended, sale) }

// applyHolds applies a committed group's changes to the carts and units (the writer).
func (s *BoltStore) applyHolds(c holdChanges) {
	if !c.any() {
		return
	}
	if len(c.added) > 0 || len(c.dropped) > 0 {
		s.cartsMu.Lock()
		for id, user := range c.dropped {
			cart := slices.DeleteFunc(s.carts[user], func(e cartEntry) bool { return e.id == id })
			if len(cart) == 0 {
				delete(s.carts, user)
			} else {
				s.carts[user] = cart
			}
		}
		for user, es := range c.added { // newer than any entry of the cart (CartKey's sequence)
			for _, e := range es {
				if _, gone := c.dropped[e.id]; !gone {
					s.carts[user] = append(s.carts[user], e)
				}
			}
		}
		s.cartsMu.Unlock()
	}
	for k, n := range c.units {
		users := s.units[k.sale]
		if users == nil {
			if n <= 0 {
				continue // a sale no longer counted (ended): a release of one of its holds
			}
			users = map[string]int{}
			s.units[k.sale] = users
		}
		if v := users[k.user] + n; v > 0 {
			users[k.user] = v
		} else {
			delete(users, k.user)
		}
	}
	for _, sale := range c.ended {
		delete(s.units, sale)
	}
}

// holdIndex is the carts and units as read from the file; and, for repairHoldExpiry,
// the holds that could not be read and the sales of the unreleased holds.
type holdIndex struct {
	carts        map[string][]cartEntry
	units        map[string]map[string]int
	unreadable   map[string]error
	holdSales    map[string]bool
	holdProducts map[string]bool // of the unreleased holds of no sale
	noExpiry     []boltHold      // unreleased holds without their hold_expiry entry
}

// loadHoldIndex is rebuildHoldIndex logging nothing (tests compare it with the writer's).
func loadHoldIndex(tx *bolt.Tx) (holdIndex, error) {
	return rebuildHoldIndex(tx, slog.New(slog.DiscardHandler))
}

// rebuildHoldIndex reads the carts and the units of the live sales from the file (on
// open): every hold record, and the orders of the streams that have a live sale from
// the first one that can be of a live sale (stream_orders from the live_sales value,
// liveSaleFrom; an order's items name their sales). Open time then follows the holds
// and the live sales' orders, not the streams' history.
//
// What cannot be read is logged and left out (repairOnOpen took out what would stop
// the sweeps): a hold record (in no cart; what can be read of its buyer, sale and
// quantity is counted, countUnreadableHold); an order of a live sale's stream, whose
// buyer (found in order_log or users' index) is counted at the limit of each of the
// stream's live sales, so that the limit is never let through.
func rebuildHoldIndex(tx *bolt.Tx, log *slog.Logger) (holdIndex, error) {
	ix := holdIndex{carts: map[string][]cartEntry{}, units: map[string]map[string]int{}, unreadable: map[string]error{}, holdSales: map[string]bool{}, holdProducts: map[string]bool{}}
	live := map[string]*Sale{}
	from := map[string]uint64{} // stream → the first stream_orders sequence to read
	err := tx.Bucket(bucketLiveSales).ForEach(func(k, v []byte) error {
		var sale Sale
		if err := getJSON(tx.Bucket(bucketSales), string(k), &sale); err != nil {
			return nil // nothing can be held in it (repairOnOpen logged it)
		}
		live[sale.ID] = &sale
		f := uint64(0) // a file before the value was kept (a read-only transaction: a test)
		if len(v) == 8 {
			f = binary.BigEndian.Uint64(v)
		}
		if cur, ok := from[sale.StreamID]; !ok || f < cur {
			from[sale.StreamID] = f
		}
		return nil
	})
	if err != nil {
		return ix, err
	}
	add := func(sale, user string, n int) {
		if live[sale] == nil {
			return
		}
		users := ix.units[sale]
		if users == nil {
			users = map[string]int{}
			ix.units[sale] = users
		}
		users[user] += n
	}
	atLimit := map[string]map[string]bool{} // sale → buyers at its limit; stream → (orders, below)
	ec, ek := tx.Bucket(bucketHoldExpiry).Cursor(), []byte(nil)
	tx.Bucket(bucketHolds).ForEach(func(k, v []byte) error {
		var h boltHold
		if err := unmarshalRecord(v, &h); err != nil {
			ix.unreadable[string(k)] = err
			countUnreadableHold(log, string(k), v, err, live, add, atLimit)
			return nil
		}
		ix.carts[h.User] = append(ix.carts[h.User], cartEntry{h.CartKey, h.ID})
		if h.SaleID != "" && !h.Released {
			add(h.SaleID, h.User, h.Quantity)
			ix.holdSales[h.SaleID] = true
		}
		if h.SaleID == "" && !h.Released {
			ix.holdProducts[h.ProductID] = true
		}
		if !h.Released { // an earlier open took its expiry entry out (restoreHoldExpiry)
			ek = append(binary.BigEndian.AppendUint64(ek[:0], uint64(h.ExpiresAt.UnixNano())), h.ID...)
			if !keyAt(ec, ek) {
				ix.noExpiry = append(ix.noExpiry, h)
			}
		}
		return nil
	})
	for _, cart := range ix.carts {
		slices.SortFunc(cart, func(a, b cartEntry) int { return strings.Compare(a.key, b.key) })
	}
	for st, f := range from {
		prefix := []byte(st + "\x00")
		c := tx.Bucket(bucketStreamOrders).Cursor()
		for k, id := c.Seek(appendSeqHex(bytes.Clone(prefix), f)); k != nil && bytes.HasPrefix(k, prefix); k, id = c.Next() {
			var o Order
			if err := getJSON(tx.Bucket(bucketOrders), string(id), &o); err != nil {
				user, ok := orderBuyer(tx, string(id))
				if !ok {
					log.Error("embedded store: an order of a stream with a live sale cannot be read, nor its buyer found: the per-user limit of the stream's live sales does not count it; restore it from a backup",
						"order", string(id), "stream", st, "err", err)
					continue
				}
				log.Error("embedded store: an order of a stream with a live sale cannot be read: its buyer is counted at the per-user limit of each of the stream's live sales",
					"order", string(id), "stream", st, "buyer", user, "err", err)
				if atLimit[st] == nil {
					atLimit[st] = map[string]bool{}
				}
				atLimit[st][user] = true
				continue
			}
			for _, it := range o.Items {
				if it.SaleID != "" {
					add(it.SaleID, o.UserID, it.Quantity)
				}
			}
		}
	}
	for _, sale := range live {
		for _, users := range [2]map[string]bool{atLimit[sale.StreamID], atLimit[sale.ID]} {
			for user := range users {
				if n := ix.units[sale.ID][user]; n < sale.PerUserLimit {
					add(sale.ID, user, sale.PerUserLimit-n)
				}
			}
		}
	}
	return ix, nil
}

// countUnreadableHold logs a hold record that cannot be read (it is in no cart) and
// counts what can still be read of it toward its buyer's per-user limit: a record of
// an unknown format (a field of another type, say) mostly still names its buyer and
// sale. An unreleased hold (or one whose released flag cannot be read) of a live sale
// adds its quantity, or, if that cannot be read, puts its buyer at the sale's limit
// (atLimit[sale]). Of a record naming no buyer, nothing can be counted: the log says so.
func countUnreadableHold(log *slog.Logger, id string, raw []byte, err error, live map[string]*Sale,
	add func(sale, user string, n int), atLimit map[string]map[string]bool) {
	user, sale, q, released, ok := salvageHold(raw)
	switch {
	case !ok:
		log.Error("embedded store: a hold record cannot be read: it is in no cart, and its buyer is unknown, so its units (if of a live sale) are not in anyone's count of the per-user limit; restore it from a backup or remove it",
			"hold", id, "err", err)
	case released || sale == "" || live[sale] == nil:
		log.Error("embedded store: a hold record cannot be read: it is in no cart (it holds no units of a live sale); restore it from a backup or remove it",
			"hold", id, "buyer", user, "err", err)
	case q > 0:
		log.Error("embedded store: a hold record cannot be read: it is in no cart; its units are counted in its buyer's per-user limit of its sale; restore it from a backup or remove it",
			"hold", id, "buyer", user, "sale", sale, "units", q, "err", err)
		add(sale, user, q)
	default:
		log.Error("embedded store: a hold record cannot be read: it is in no cart; its quantity cannot be read, so its buyer is counted at the limit of its sale; restore it from a backup or remove it",
			"hold", id, "buyer", user, "sale", sale, "err", err)
		if atLimit[sale] == nil {
			atLimit[sale] = map[string]bool{}
		}
		atLimit[sale][user] = true
	}
}

// salvageHold reads, field by field, what it can of a hold record that does not decode
// as a whole: its buyer (user, or the user of its cart_key), its sale (none if the
// field is absent), its quantity (0 if unreadable) and whether it is released (false
// if unreadable). ok is false when the buyer or the sale cannot be read.
func salvageHold(raw []byte) (user, sale string, q int, released, ok bool) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return "", "", 0, false, false
	}
	if json.Unmarshal(fields["user"], &user) != nil || user == "" {
		var ck string
		if json.Unmarshal(fields["cart_key"], &ck) != nil {
			return "", "", 0, false, false
		}
		if user, ok = userOfKey([]byte(ck)); !ok || user == "" {
			return "", "", 0, false, false
		}
	}
	if s, in := fields["sale_id"]; in && json.Unmarshal(s, &sale) != nil {
		return "", "", 0, false, false
	}
	json.Unmarshal(fields["quantity"], &q)
	json.Unmarshal(fields["released"], &released)
	return user, sale, q, released, true
}

// setHoldIndex makes ix the store's carts and units (the writer, or OpenBolt).
func (s *BoltStore) setHoldIndex(ix holdIndex) {
	s.cartsMu.Lock()
	s.carts = ix.carts
	s.cartsMu.Unlock()
	s.units = ix.units
}

// viewCart runs fn in a read transaction with the ids of the holds in the user's cart,
// oldest first. The cart is copied and the transaction begun under cartsMu's read
// lock, so every hold listed committed before the transaction began; one the
// transaction no longer has was taken out of the cart by a later commit (fn skips it).
func (s *BoltStore) viewCart(userID string, fn func(t *boltTx, ids []string) error) error {
	s.cartsMu.RLock()
	tx, err := s.db.Begin(false)
	cart := s.carts[userID]
	ids := make([]string, len(cart))
	for i, e := range cart {
		ids[i] = e.id
	}
	s.cartsMu.RUnlock()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(newBoltTx(tx), ids)
}
