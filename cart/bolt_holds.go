package cart

import (
	"fmt"
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
// streams; the writer changes them per group (groupTx) and applies
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

// holdIndex is the carts and units as read from the file.
type holdIndex struct {
	carts map[string][]cartEntry
	units map[string]map[string]int
}

// loadHoldIndex reads the carts and the units of the live sales from the file (on
// open): every hold record, and the orders of the streams that have a live sale
// (stream_orders; an order's items name their sales).
func loadHoldIndex(tx *bolt.Tx) (holdIndex, error) {
	ix := holdIndex{carts: map[string][]cartEntry{}, units: map[string]map[string]int{}}
	live := map[string]bool{}
	streams := map[string]bool{}
	err := tx.Bucket(bucketLiveSales).ForEach(func(k, _ []byte) error {
		var sale Sale
		if err := getJSON(tx.Bucket(bucketSales), string(k), &sale); err != nil {
			return fmt.Errorf("live sale %s: %w", k, err)
		}
		live[sale.ID] = true
		streams[sale.StreamID] = true
		return nil
	})
	if err != nil {
		return ix, err
	}
	add := func(sale, user string, n int) {
		if !live[sale] {
			return
		}
		users := ix.units[sale]
		if users == nil {
			users = map[string]int{}
			ix.units[sale] = users
		}
		users[user] += n
	}
	err = tx.Bucket(bucketHolds).ForEach(func(k, v []byte) error {
		var h boltHold
		if err := unmarshalRecord(v, &h); err != nil {
			return fmt.Errorf("hold %s: %w", k, err)
		}
		ix.carts[h.User] = append(ix.carts[h.User], cartEntry{h.CartKey, h.ID})
		if h.SaleID != "" && !h.Released {
			add(h.SaleID, h.User, h.Quantity)
		}
		return nil
	})
	if err != nil {
		return ix, err
	}
	for _, cart := range ix.carts {
		slices.SortFunc(cart, func(a, b cartEntry) int { return strings.Compare(a.key, b.key) })
	}
	for st := range streams {
		for _, id := range indexValues(tx.Bucket(bucketStreamOrders), st) {
			var o Order
			if err := getJSON(tx.Bucket(bucketOrders), id, &o); err != nil {
				return ix, fmt.Errorf("order %s: %w", id, err)
			}
			for _, it := range o.Items {
				if it.SaleID != "" {
					add(it.SaleID, o.UserID, it.Quantity)
				}
			}
		}
	}
	return ix, nil
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
