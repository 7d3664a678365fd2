package live

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/livecart/livecart/cart"
)

// StockGate limits a stock key's events (a sale's remaining, or a product's own stock)
// across the nodes sharing a Bus: the RedisBus implements it. Each node counts its
// changes, takes turns at a gate held for an interval, and the taker publishes the
// value it reads from the store at that moment, so the newest change on any node is
// always followed by an event carrying a value read after it. Should the node that
// counted a change die before such a value is out, the key is overdue after
// StockRescueAfter and another node with viewers of the stream publishes one. Should
// it die before counting it (right after the store's commit), or with a product event
// held back, StaleStock finds the store's value differing from the one last delivered.
type StockGate interface {
	// StockTurn counts new changes of key on this node (count) or asks again for the
	// version need (-1: every change counted so far, on any node), and tries to take
	// the gate.
	StockTurn(ctx context.Context, sid, key string, count bool, need int64, interval time.Duration) (StockTurn, error)
	// OverdueStock returns the stock keys of sid with changes counted and no value read
	// after them published for StockRescueAfter; the caller publishes one (a turn
	// with need -1). Each is put off by StockRescueAfter again, for one node at a time.
	OverdueStock(ctx context.Context, sid string) ([]string, error)
	// PublishStock publishes a stock event read under the gate as version ver, whose
	// value is value; a value older than one already published is dropped (ok false).
	// It holds the gate for an interval from the publication. A nil body (a hidden
	// product's stock) publishes nothing and marks the version published.
	PublishStock(ctx context.Context, sid, key string, ver int64, interval time.Duration, typ string, body []byte, value int) (rec Record, ok bool, err error)
	// StaleStock compares the store's current values of sid's stock keys, sale
	// statuses and pins (current) with the values last delivered to sid's viewers
	// (every event carrying one records it: stock, sale, product, pin, unpin) and
	// returns the keys whose delivered value differs and has not been published for
	// StockRescueAfter: a change whose node died before counting it at the gate or
	// publishing its event, or a held-back event lost with its node. A sale or pin
	// with nothing delivered since the stream's first comparison counts as never
	// delivered (a new sale's, or a pin's, event lost). The caller publishes the
	// store's value of each (a stock turn counting a change, a sale event, a pin or
	// unpin, or a product, published with stamp: PublishRescued). Each is put off by
	// StockRescueAfter again, for one node at a time. final are compared the same
	// way; they are values that never change again (an ended sale's remaining and
	// status): settled names those whose delivered value is theirs, which the caller
	// need not read and compare again.
	StaleStock(ctx context.Context, sid string, current, final []StockValue) (keys, settled []string, stamp int64, err error)
	// StaleTurn takes this second's turn at sid's StaleStock comparison: true for the
	// first node to ask in a second (of Redis's clock), false for the others, which
	// skip the comparison and its store reads. A node dying with the turn loses that
	// second only.
	StaleTurn(ctx context.Context, sid string) (bool, error)
}

// StockValue is a stock key's value: "stock:<sale id>" (a sale's remaining) or
// "stock:product:<product id>" (a product's own stock); or "sale:<sale id>" and the
// sale's status (saleRank), "product:<product id>" and its productValue,
// "pin:<product id>" and 1 when pinned (0 not), or "stream" and 1 when the stream has
// ended (0 not), compared the same way.
type StockValue struct {
	Key   string
	Value int
}

// stockValues returns the stock values an event carries, as its viewers will read
// them (the pages take a sale's remaining and a product's stock from each).
func stockValues(data any) []StockValue {
	switch d := data.(type) {
	case cart.StockData:
		if d.SaleID == "" {
			return []StockValue{{"stock:product:" + d.ProductID, d.Remaining}}
		}
		return []StockValue{{"stock:" + d.SaleID, d.Remaining}}
	case cart.SaleData:
		return []StockValue{{"stock:" + d.Sale.ID, d.Sale.Remaining}, {"sale:" + d.Sale.ID, saleRank(d.Sale.Status)}}
	case cart.ProductData:
		return []StockValue{{"stock:product:" + d.Product.ID, d.Product.Stock}, {"product:" + d.Product.ID, productValue(d.Product)}}
	case cart.PinData:
		return []StockValue{{"stock:product:" + d.Product.ID, d.Product.Stock}, {"pin:" + d.Product.ID, 1}}
	case cart.UnpinData:
		return []StockValue{{"pin:" + d.ProductID, 0}}
	case cart.StreamData:
		if d.Ended {
			return []StockValue{{"stream", 1}}
		}
	}
	return nil
}

// productValue is what a product event shows its viewers beyond the product's stock
// (its own key): 0 for a hidden product, which the viewers only know to be hidden (the
// same as a product never delivered), else a hash of its other fields, odd (never 0).
// The comparison finds a product event lost (a creation, a hide or unhide, a change)
// by it: "product:<id>". Held and sold are left out, as the stock: stock-only product
// events are coalesced and their stock compared on its own.
func productValue(p cart.Product) int {
	if p.Hidden {
		return 0
	}
	const prime = 1099511628211
	h := uint64(14695981039346656037) // FNV-1a
	for _, f := range [...]string{p.ID, p.SKU, p.Title, p.Description, p.Currency, p.ImageURL} {
		for i := 0; i < len(f); i++ {
			h = (h ^ uint64(f[i])) * prime
		}
		h = (h ^ 0xff) * prime // a separator no UTF-8 text has: fields never run together
	}
	for i := range 8 {
		h = (h ^ uint64(byte(p.PriceCents>>(8*i)))) * prime
	}
	return int(h&(1<<52-1)) | 1 // exact in a Lua number too
}

// saleRank orders a sale's statuses (they only move forward): scheduled 1, active 2,
// ended 3.
func saleRank(status string) int {
	switch status {
	case cart.SaleScheduled:
		return 1
	case cart.SaleActive:
		return 2
	case cart.SaleEnded:
		return 3
	}
	return 0
}

func appendStockValues(args []any, vals []StockValue) []any {
	for _, v := range vals {
		args = append(args, v.Key, v.Value)
	}
	return args
}

// StockTurn is the answer of StockGate.StockTurn.
type StockTurn struct {
	Need    int64         // the version this node's changes need published
	Covered bool          // a value read after them has been published: nothing to do
	Take    bool          // the caller holds the gate: read the store, publish as Version
	Version int64         // when Take
	Wait    time.Duration // when neither: the gate is held this long
}

// StockReader reads the current free units that stock events carry (cart.Store
// implements it).
type StockReader interface {
	GetSale(ctx context.Context, id string) (cart.Sale, error)
	GetProduct(ctx context.Context, id string) (cart.Product, error)
	// GetStream, ListSales, ListProducts and ListPinned read a stream's current values
	// for StaleStock.
	GetStream(ctx context.Context, id string) (cart.Stream, error)
	ListSales(ctx context.Context, streamID string) ([]cart.Sale, error)
	ListProducts(ctx context.Context, streamID string) ([]cart.Product, error)
	ListPinned(ctx context.Context, streamID string) ([]cart.Product, error)
}

//go:embed lua/stock_gate.lua
var stockGateLua string

var stockGateScript = redis.NewScript(stockGateLua)

//go:embed lua/stock_due.lua
var stockDueLua string

var stockDueScript = redis.NewScript(stockDueLua)

//go:embed lua/stock_seen.lua
var stockSeenLua string

var stockSeenScript = redis.NewScript(stockSeenLua)

//go:embed lua/stale_turn.lua
var staleTurnLua string

var staleTurnScript = redis.NewScript(staleTurnLua)

// stockKeep is how long Redis keeps a stock key's versions after its last change, and
// a stream's delivered stock values after the last publication or comparison.
const stockKeep = time.Hour

// StockRescueAfter is how long after a counted stock change with no value read after
// it published the change is overdue: the node that counted it normally publishes
// within a coalesce interval; past this it is taken to have died.
const StockRescueAfter = time.Second

// stockDueBatch is how many overdue keys of one stream one sweep takes over.
const stockDueBatch = 64

var _ StockGate = (*RedisBus)(nil)

// StockTurn implements StockGate.
func (b *RedisBus) StockTurn(ctx context.Context, sid, key string, count bool, need int64, interval time.Duration) (StockTurn, error) {
	c := "0"
	if count {
		c = "1"
	}
	res, err := stockGateScript.Run(ctx, b.rdb, []string{b.key(sid, "stockver:"+key), b.key(sid, "stockgate:"+key), b.key(sid, "stockdue")},
		c, need, max(interval.Milliseconds(), 1), stockKeep.Milliseconds(), StockRescueAfter.Milliseconds(), key).Int64Slice()
	if err != nil {
		return StockTurn{}, fmt.Errorf("live: stock gate: %w", err)
	}
	if len(res) != 3 {
		return StockTurn{}, fmt.Errorf("live: stock gate: %d values, want 3", len(res))
	}
	t := StockTurn{Need: res[0]}
	switch res[1] {
	case 0:
		t.Covered = true
	case 1:
		t.Take, t.Version = true, res[2]
	default:
		t.Wait = time.Duration(res[2]) * time.Millisecond
	}
	return t, nil
}

// PublishStock implements StockGate.
func (b *RedisBus) PublishStock(ctx context.Context, sid, key string, ver int64, interval time.Duration, typ string, body []byte, value int) (Record, bool, error) {
	keys := []string{b.key(sid, "seq"), b.key(sid, "history"), b.key(sid, "pub:"+uuid.NewString()),
		b.key(sid, "stockseen"), b.key(sid, "stockver:"+key), b.key(sid, "stockgate:"+key), b.key(sid, "stockdue")}
	markOnly := 0
	if body == nil {
		markOnly = 1
	}
	res, err := publishScript.Run(ctx, b.rdb, keys, quoteType(typ), body, b.history, b.channel(sid), 0,
		stockKeep.Milliseconds(), 1, key, value,
		ver, max(interval.Milliseconds(), 1), stockKeep.Milliseconds(), key, markOnly).Slice()
	if err != nil {
		return Record{}, false, fmt.Errorf("live: publish stock: %w", err)
	}
	seq, _ := res[0].(int64)
	frame, _ := res[1].(string)
	if seq == 0 {
		return Record{}, false, nil
	}
	return Record{Seq: seq, Frame: []byte(frame)}, true, nil
}

// OverdueStock implements StockGate.
func (b *RedisBus) OverdueStock(ctx context.Context, sid string) ([]string, error) {
	keys, err := stockDueScript.Run(ctx, b.rdb, []string{b.key(sid, "stockdue")},
		StockRescueAfter.Milliseconds(), stockDueBatch).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("live: overdue stock: %w", err)
	}
	return keys, nil
}

// StaleStock implements StockGate.
func (b *RedisBus) StaleStock(ctx context.Context, sid string, current, final []StockValue) ([]string, []string, int64, error) {
	if len(current)+len(final) == 0 {
		return nil, nil, 0, nil
	}
	args := make([]any, 0, 3+2*len(current)+2*len(final))
	args = append(args, StockRescueAfter.Milliseconds(), stockKeep.Milliseconds(), len(final))
	args = appendStockValues(args, current)
	args = appendStockValues(args, final)
	res, err := stockSeenScript.Run(ctx, b.rdb, []string{b.key(sid, "stockseen")}, args...).StringSlice()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("live: stale stock: %w", err)
	}
	if len(res) == 0 {
		return nil, nil, 0, nil
	}
	stamp, err := strconv.ParseInt(res[0], 10, 64)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("live: stale stock: stamp %q: %w", res[0], err)
	}
	var keys, settled []string
	for _, k := range res[1:] {
		if s, ok := strings.CutPrefix(k, "="); ok {
			settled = append(settled, s)
		} else {
			keys = append(keys, k)
		}
	}
	return keys, settled, stamp, nil
}

// StaleTurn implements StockGate.
func (b *RedisBus) StaleTurn(ctx context.Context, sid string) (bool, error) {
	n, err := staleTurnScript.Run(ctx, b.rdb, []string{b.key(sid, "staleturn")}, 2*time.Second.Milliseconds()).Int64()
	if err != nil {
		return false, fmt.Errorf("live: stale stock turn: %w", err)
	}
	return n == 1, nil
}
