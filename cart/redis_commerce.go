package cart

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Products, pins and sales of the Redis store.

// claimIndex points a global index key (pidx/sidx) at a stream before the record is
// written. It answers whether this call created the pointer (to undo on failure).
func (s *RedisStore) claimIndex(ctx context.Context, index, id, streamID string) (bool, error) {
	k := s.prefix + index + ":" + id
	ok, err := s.rdb.SetNX(ctx, k, streamID, 0).Result()
	if err != nil {
		return false, unavailable(err)
	}
	if ok {
		return true, nil
	}
	cur, err := s.rdb.Get(ctx, k).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, unavailable(err)
	}
	if cur != streamID {
		return false, fmt.Errorf("id %s exists: %w", id, ErrConflict)
	}
	return false, nil
}

// CreateProduct stores a new product.
func (s *RedisStore) CreateProduct(ctx context.Context, p Product, maxProducts int) (Product, error) {
	created, err := s.claimIndex(ctx, "pidx", p.ID, p.StreamID)
	if err != nil {
		return Product{}, err
	}
	r, err := s.run(ctx, "product_create", p.StreamID, append([]any{maxProducts}, productHash(p)...)...)
	if err != nil {
		if created && !errors.Is(err, ErrUnavailable) {
			s.rdb.Del(ctx, s.prefix+"pidx:"+p.ID)
		}
		return Product{}, err
	}
	s.remember(p.ID, p.StreamID)
	return productFromHash(r.Product), nil
}

// GetProduct returns the product, hidden or not.
func (s *RedisStore) GetProduct(ctx context.Context, id string) (Product, error) {
	sid, err := s.streamOfID(ctx, "pidx", id)
	if err != nil {
		return Product{}, err
	}
	m, err := s.rdb.HGetAll(ctx, s.base(sid)+"p:"+id).Result()
	if err != nil {
		return Product{}, unavailable(err)
	}
	if len(m) == 0 {
		return Product{}, fmt.Errorf("product %s: %w", id, ErrNotFound)
	}
	return productFromHash(m), nil
}

// ListProducts returns all the stream's products, oldest first.
func (s *RedisStore) ListProducts(ctx context.Context, streamID string) ([]Product, error) {
	return s.listProducts(ctx, streamID, "products")
}

// ListPinned returns the stream's pinned products in pin order.
func (s *RedisStore) ListPinned(ctx context.Context, streamID string) ([]Product, error) {
	return s.listProducts(ctx, streamID, "pins")
}

func (s *RedisStore) listProducts(ctx context.Context, streamID, listName string) ([]Product, error) {
	ms, err := s.list(ctx, streamID, listName, "p")
	if err != nil {
		return nil, err
	}
	out := make([]Product, 0, len(ms))
	for _, m := range ms {
		out = append(out, productFromHash(m))
	}
	return out, nil
}

// SetProductHidden hides or unhides the product (hiding unpins it).
func (s *RedisStore) SetProductHidden(ctx context.Context, id string, hidden bool) (Product, bool, bool, error) {
	sid, err := s.streamOfID(ctx, "pidx", id)
	if err != nil {
		return Product{}, false, false, err
	}
	r, err := s.run(ctx, "product_hide", sid, id, flag(hidden))
	if err != nil {
		return Product{}, false, false, err
	}
	return productFromHash(r.Product), r.Changed, r.Unpinned, nil
}

// PinProduct appends the product to the stream's pins.
func (s *RedisStore) PinProduct(ctx context.Context, streamID, productID string, maxPins int) ([]Product, bool, error) {
	return s.pin(ctx, "pin", streamID, productID, maxPins)
}

// UnpinProduct removes the product from the stream's pins.
func (s *RedisStore) UnpinProduct(ctx context.Context, streamID, productID string) ([]Product, bool, error) {
	return s.pin(ctx, "unpin", streamID, productID, 0)
}

func (s *RedisStore) pin(ctx context.Context, op, streamID, productID string, maxPins int) ([]Product, bool, error) {
	r, err := s.run(ctx, "pin", streamID, op, productID, maxPins)
	if err != nil {
		return nil, false, err
	}
	pinned := []Product{}
	for _, id := range splitList(r.Pins, ",") {
		pinned = append(pinned, productFromHash(r.Pinned[id]))
	}
	return pinned, r.Changed, nil
}

// dueMember names a sale or hold in a global due set: "sid id".
func dueMember(streamID, id string) string { return streamID + " " + id }

// The global sets of due holds. Since 2026-12-06 a batch of holds (one hold script
// call) is one entry of holddue:b, "sid" followed by " hid len:uid" per hold (see
// holdBatchMember), due at the batch's first expiry: the sweep releases those of its
// holds that are due and still live, skips the ones ordered, removed or released (each
// is looked for in its user's cart, see lua/release.lua), and puts the ones not yet
// due in an entry of their own. Before, a hold was an entry of its own: "sid hid uid"
// in holddue:u (made 2026-12-04 to 12-06; the checkout dropped it) or "sid hid" in
// holddue (older). Each set is swept only by the versions that write it or came after:
// a node of an earlier version would take the newer entry for a hold id, find no hold
// and drop the entry, so the units of a newer hold would stay held.
const (
	holdBatchDueKey = "holddue:b"
	holdDueKey      = "holddue:u"
	olderHoldDueKey = "holddue"
)

// holdBatchMember is the holddue:b entry of holds of stream sid (their ids and
// users'): "sid hid len:uid hid len:uid ..." (a user id may hold anything; hold ids
// and stream ids hold no space).
func holdBatchMember(sid string, ids, users []string) string {
	n := len(sid)
	for i := range ids {
		n += len(ids[i]) + len(users[i]) + 8
	}
	b := make([]byte, 0, n)
	b = append(b, sid...)
	for i := range ids {
		b = append(b, ' ')
		b = append(b, ids[i]...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(len(users[i])), 10)
		b = append(b, ':')
		b = append(b, users[i]...)
	}
	return string(b)
}

// parseHoldBatch reads a holddue:b entry (see holdBatchMember): its stream, and its
// holds as the release script takes them, "hid uid" each. ok false: not of that form.
func parseHoldBatch(m string) (sid string, holds []string, ok bool) {
	sid, rest, ok := strings.Cut(m, " ")
	if !ok || sid == "" {
		return "", nil, false
	}
	for rest != "" {
		id, r, ok := strings.Cut(rest, " ")
		if !ok || id == "" {
			return "", nil, false
		}
		ln, r, ok := strings.Cut(r, ":")
		n, err := strconv.Atoi(ln)
		if !ok || err != nil || n < 0 || n > len(r) {
			return "", nil, false
		}
		holds = append(holds, id+" "+r[:n])
		rest = r[n:]
		if rest != "" {
			if rest[0] != ' ' {
				return "", nil, false
			}
			rest = rest[1:]
			if rest == "" {
				return "", nil, false
			}
		}
	}
	return sid, holds, len(holds) > 0
}

// holdDueMember names a hold made since 2026-12-04 in holdDueKey: "sid hid uid".
func holdDueMember(streamID, holdID, userID string) string {
	return streamID + " " + holdID + " " + userID
}

// CreateSale stores a new sale and takes its units out of the product's stock.
func (s *RedisStore) CreateSale(ctx context.Context, sale Sale, now time.Time, maxSales int) (Sale, Product, error) {
	created, err := s.claimIndex(ctx, "sidx", sale.ID, sale.StreamID)
	if err != nil {
		return Sale{}, Product{}, err
	}
	next := sale.EndsAt
	if sale.StartsAt.After(now) {
		next = sale.StartsAt
	}
	member := dueMember(sale.StreamID, sale.ID)
	due := redis.Z{Score: float64(next.UnixMicro()), Member: member}
	if err := s.rdb.ZAdd(ctx, s.prefix+"saledue", due).Err(); err != nil {
		return Sale{}, Product{}, unavailable(err)
	}
	args := append([]any{micros(now), maxSales}, saleHash(sale)...)
	r, err := s.run(ctx, "sale_create", sale.StreamID, args...)
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			s.rdb.ZRem(ctx, s.prefix+"saledue", member)
			if created {
				s.rdb.Del(ctx, s.prefix+"sidx:"+sale.ID)
			}
		}
		return Sale{}, Product{}, err
	}
	s.remember(sale.ID, sale.StreamID)
	return saleFromHash(r.Sale), productFromHash(r.Products[sale.ProductID]), nil
}

// GetSale returns the sale.
func (s *RedisStore) GetSale(ctx context.Context, id string) (Sale, error) {
	sid, err := s.streamOfID(ctx, "sidx", id)
	if err != nil {
		return Sale{}, err
	}
	m, err := s.rdb.HGetAll(ctx, s.base(sid)+"s:"+id).Result()
	if err != nil {
		return Sale{}, unavailable(err)
	}
	if len(m) == 0 {
		return Sale{}, fmt.Errorf("sale %s: %w", id, ErrNotFound)
	}
	return saleFromHash(m), nil
}

// ListSales returns the stream's sales, oldest first.
func (s *RedisStore) ListSales(ctx context.Context, streamID string) ([]Sale, error) {
	return s.ListSalesExcept(ctx, streamID, nil)
}

// ListSalesExcept returns the stream's sales but those of the ids in skip, oldest
// first; the ones left out are not read (the live hub's node-death comparison leaves
// out the ended sales whose final values it has seen delivered).
func (s *RedisStore) ListSalesExcept(ctx context.Context, streamID string, skip []string) ([]Sale, error) {
	ms, err := s.list(ctx, streamID, "sales", "s", skip...)
	if err != nil {
		return nil, err
	}
	out := make([]Sale, 0, len(ms))
	for _, m := range ms {
		out = append(out, saleFromHash(m))
	}
	return out, nil
}

// StopSale ends a scheduled or active sale now.
func (s *RedisStore) StopSale(ctx context.Context, id string, now time.Time) (Sale, Product, bool, error) {
	sid, err := s.streamOfID(ctx, "sidx", id)
	if err != nil {
		return Sale{}, Product{}, false, err
	}
	r, err := s.run(ctx, "sale_stop", sid, id, formatTime(now), micros(now))
	if err != nil {
		return Sale{}, Product{}, false, err
	}
	return saleFromHash(r.Sale), productFromHash(r.Product), r.Changed, nil
}

// advanceBatch bounds the sales one AdvanceSales call moves.
const advanceBatch = 1000

// AdvanceSales moves due sales along by time. The global saledue set says which
// sales may be due; the script of each stream decides (idempotently), and the set is
// then pointed at each sale's next change.
func (s *RedisStore) AdvanceSales(ctx context.Context, now time.Time) ([]SaleUpdate, error) {
	dueKey := s.prefix + "saledue"
	members, err := s.dueMembers(ctx, dueKey, now, advanceBatch)
	if err != nil {
		return nil, unavailable(err)
	}
	updates := []SaleUpdate{}
	for _, g := range groupByStream(members) {
		r, err := s.run(ctx, "sale_advance", g.streamID, append([]any{micros(now)}, g.args()...)...)
		if err != nil {
			return updates, err
		}
		pipe := s.rdb.Pipeline()
		for _, id := range g.ids {
			a := r.Advanced[id]
			member := dueMember(g.streamID, id)
			if a.Next == "" {
				pipe.ZRem(ctx, dueKey, member)
			} else {
				pipe.ZAdd(ctx, dueKey, redis.Z{Score: float64(atoi64(a.Next)), Member: member})
			}
			if a.Changed {
				sale := saleFromHash(r.Sales[id])
				updates = append(updates, SaleUpdate{Sale: sale, Product: productFromHash(r.Products[sale.ProductID])})
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return updates, unavailable(err)
		}
	}
	return updates, nil
}

// streamGroup is the ids of one stream among a due set's members.
type streamGroup struct {
	streamID string
	ids      []string
}

func (g streamGroup) args() []any {
	out := make([]any, len(g.ids))
	for i, id := range g.ids {
		out[i] = id
	}
	return out
}

// groupByStream groups "sid id" members by stream, keeping their order.
func groupByStream(members []string) []streamGroup {
	var out []streamGroup
	index := map[string]int{}
	for _, m := range members {
		sid, id, ok := strings.Cut(m, " ")
		if !ok {
			continue
		}
		i, seen := index[sid]
		if !seen {
			i = len(out)
			index[sid] = i
			out = append(out, streamGroup{streamID: sid})
		}
		out[i].ids = append(out[i].ids, id)
	}
	return out
}
