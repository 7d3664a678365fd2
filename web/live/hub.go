// Package live is livecart's live channel: the websocket hub that fans a stream's
// events out to its viewers (snapshot first, then every event with the stream's seq),
// resume from a bounded history, chat with mutes and rate limits, and viewer counts.
// Events travel through a Bus (in memory for one node, Redis for several) that assigns
// each stream's seq; viewer counts through a Presence. The package knows nothing of
// cart stores: the web layer supplies snapshots through SnapshotSource.
package live

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/livecart/livecart/cart"
)

// Snapshot is the state a viewer starts from: the first frame of a connection.
type Snapshot struct {
	Stream  any            `json:"stream"`
	Pinned  []cart.Product `json:"pinned"`
	Sales   []cart.Sale    `json:"sales"`
	Viewers int            `json:"viewers"`
	Media   MediaState     `json:"media"`
	// SeqTs is the ts of the event at the snapshot's seq (the hub fills it; empty, and
	// left out, when there is none or it is no longer known): a client resuming from
	// the snapshot sends it as since_ts.
	SeqTs string `json:"seq_ts,omitempty"`
}

// MediaState is whether the stream's audio and video are muted for viewers.
type MediaState struct {
	AudioMuted bool `json:"audio_muted"`
	VideoMuted bool `json:"video_muted"`
}

// SnapshotSource reads a stream's current state (the web layer implements it). The hub
// fills Viewers itself.
type SnapshotSource interface {
	Snapshot(ctx context.Context, sid string) (Snapshot, error)
}

// SnapshotFunc adapts a function to SnapshotSource.
type SnapshotFunc func(ctx context.Context, sid string) (Snapshot, error)

// Snapshot calls f.
func (f SnapshotFunc) Snapshot(ctx context.Context, sid string) (Snapshot, error) { return f(ctx, sid) }

// Config configures a Hub. Bus and Presence are required; Snapshots is used when
// ServeOptions has none; zero durations
// and limits take the defaults named beside them.
type Config struct {
	Bus       Bus
	Presence  Presence
	Snapshots SnapshotSource
	Logger    *slog.Logger
	Now       func() time.Time
	// Stock, when set and Bus is a StockGate (Redis), makes stock events coalesce
	// across nodes, each carrying the value read from it when published; otherwise
	// each node coalesces its own, also publishing the value read from Stock when set.
	Stock StockReader
	// Metrics, when set, receives the hub's connection and delivery counters.
	Metrics prometheus.Registerer
	// CheckOrigin decides whether a browser's Origin may connect; nil allows any.
	CheckOrigin func(r *http.Request) bool

	ChatRate      rate.Limit    // chat messages a second per user and stream, over every node on a ChatGate (1)
	ChatBurst     int           // (5)
	MaxQueueBytes int           // a client this far behind is dropped (1 MiB)
	MaxBehind     time.Duration // or this long behind (10 s)
	WriteTimeout  time.Duration // per batch of frames (10 s)
	// JoinTimeout bounds a connection's join (the bus subscription, the history or the
	// snapshot read) on a bus or store that does not answer: the connection is then
	// closed with 1013 (5 s).
	JoinTimeout      time.Duration
	PingInterval     time.Duration // websocket pings (30 s), each connection in its own second of it (pingTick); a client silent for 2× is dropped
	CoalesceInterval time.Duration // stock events per sale/product at most once per (100 ms)
	ViewersInterval  time.Duration // viewers events at most once per (1 s)
	// EmitQueueMax and EmitQueueBytes bound, per stream, the events waiting for a bus
	// that is not in process (Redis slow or down) to publish them (1024 events, 1 MiB;
	// an event counts its JSON and 128 bytes). Over either, state events coalesce and
	// others are refused (TryEmit).
	EmitQueueMax   int
	EmitQueueBytes int
	// Writers is the number of writer shards that send events to the connections
	// (GOMAXPROCS).
	Writers int
	// SendBatch is how many connections' sends a writer shard hands io_uring per
	// io_uring_enter (Linux): 0 leaves it to LIVECART_LIVE_IOURING (unset: 256; 0 or
	// off: no io_uring); below 0, no io_uring: one sendto(2) per connection, as also
	// where io_uring_setup fails.
	SendBatch int
	// HeartbeatAfter: a stream that has sent its connections nothing for this long
	// sends those that asked (?heartbeat=1) a heartbeat event, on the ping tick nearest
	// to it (5 s).
	HeartbeatAfter time.Duration
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ChatRate == 0 {
		c.ChatRate = 1
	}
	if c.ChatBurst == 0 {
		c.ChatBurst = 5
	}
	if c.MaxQueueBytes == 0 {
		c.MaxQueueBytes = 1 << 20
	}
	if c.MaxBehind == 0 {
		c.MaxBehind = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.JoinTimeout == 0 {
		c.JoinTimeout = 5 * time.Second
	}
	if c.PingInterval == 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.HeartbeatAfter == 0 {
		c.HeartbeatAfter = 5 * time.Second
	}
	if c.CoalesceInterval == 0 {
		c.CoalesceInterval = 100 * time.Millisecond
	}
	if c.ViewersInterval == 0 {
		c.ViewersInterval = time.Second
	}
	if c.EmitQueueMax <= 0 {
		c.EmitQueueMax = 1024
	}
	if c.EmitQueueBytes <= 0 {
		c.EmitQueueBytes = 1 << 20
	}
	if c.Writers <= 0 {
		c.Writers = runtime.GOMAXPROCS(0)
	}
	if c.SendBatch == 0 {
		var err error
		if c.SendBatch, err = ringBatchFromEnv(); err != nil {
			c.Logger.Warn("live: " + err.Error())
		}
	}
}

// Hub serves /ws/{sid} connections and implements cart.Emitter.
type Hub struct {
	cfg       Config
	metrics   *metrics
	upgrader  websocket.Upgrader
	stop      chan struct{}
	loopDone  chan struct{}
	sweepDone chan struct{}  // closed when sweepOverdueStock returns
	presDone  chan struct{}  // closed when presenceLoop returns
	conns     sync.WaitGroup // one per open connection
	writers   *writerPool
	// stockGate is cfg.Bus when it coalesces stock across nodes (and cfg.Stock is set).
	stockGate StockGate
	// background runs the stock turns until Close cancels backgroundCtx.
	background       sync.WaitGroup
	backgroundCtx    context.Context
	cancelBackground context.CancelFunc
	backgroundMu     sync.Mutex // guards backgroundDone; orders background.Add before Wait
	backgroundDone   bool

	mu       sync.Mutex                // guards the maps and closed
	rooms    map[string]*room          // streams with connections on this node
	emitters map[string]*emitter       // streams with recent emits
	limiters map[chatKey]*rate.Limiter // chat limiters by stream and user id
	closed   bool

	// chatGateFailing is set while the shared chat limit (ChatGate) fails and this
	// node's limiters stand in: its warning is logged once per failure.
	chatGateFailing atomic.Bool
}

// chatKey names a chat limiter: the limit is per user on each stream, as the shared
// one (ChatGate) is.
type chatKey struct{ sid, user string }

var _ cart.Emitter = (*Hub)(nil)

// ErrClosed is returned when the hub has been closed.
var ErrClosed = errors.New("live: hub closed")

// NewHub returns a running Hub; Close stops it.
func NewHub(cfg Config) *Hub {
	cfg.setDefaults()
	h := &Hub{
		cfg:       cfg,
		metrics:   newMetrics(cfg.Metrics),
		writers:   newWriterPool(cfg.Writers, cfg.SendBatch),
		stop:      make(chan struct{}),
		loopDone:  make(chan struct{}),
		sweepDone: make(chan struct{}),
		presDone:  make(chan struct{}),
		rooms:     map[string]*room{},
		emitters:  map[string]*emitter{},
		limiters:  map[chatKey]*rate.Limiter{},
	}
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// Small own read buffer (client frames are small) and pooled write buffers (events
		// go out as prepared frames): the server's 4 KiB buffers are let go at upgrade.
		ReadBufferSize:  1024,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     h.checkOrigin,
		Error:           refuseUpgrade,
	}
	if g, ok := cfg.Bus.(StockGate); ok && cfg.Stock != nil {
		h.stockGate = g
	}
	h.backgroundCtx, h.cancelBackground = context.WithCancel(context.Background())
	go h.tickLoop()
	go h.presenceLoop()
	go h.sweepOverdueStock()
	return h
}

func (h *Hub) checkOrigin(r *http.Request) bool {
	if h.cfg.CheckOrigin == nil {
		return true
	}
	return h.cfg.CheckOrigin(r)
}

// OriginChecker allows requests without Origin and those whose Origin is listed
// ("*" allows any), in any case, as the CORS check does (a browser sends the scheme and
// host in lowercase; a list may spell them otherwise).
func OriginChecker(allowed []string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		o := r.Header.Get("Origin")
		if o == "" {
			return true
		}
		for _, a := range allowed {
			if a == "*" || strings.EqualFold(a, o) {
				return true
			}
		}
		return false
	}
}

// Viewers returns the open connections to sid on all nodes.
func (h *Hub) Viewers(ctx context.Context, sid string) int {
	n, err := h.cfg.Presence.Count(ctx, sid)
	if err != nil {
		h.cfg.Logger.Warn("live: presence count", "stream", sid, "err", err)
		return h.localCount(sid)
	}
	return n
}

func (h *Hub) localCount(sid string) int {
	h.mu.Lock()
	r := h.rooms[sid]
	h.mu.Unlock()
	if r == nil {
		return 0
	}
	return r.count()
}

// Mute keeps userID from chatting on sid until the given time (all nodes).
func (h *Hub) Mute(ctx context.Context, sid, userID string, until time.Time) error {
	return h.cfg.Bus.Mute(ctx, sid, userID, until)
}

// Unmute lifts a mute.
func (h *Hub) Unmute(ctx context.Context, sid, userID string) error {
	return h.cfg.Bus.Unmute(ctx, sid, userID)
}

// Bounds on what Close waits for: a hung Redis (frozen, or a network that drops
// packets) must not hold up shutdown for its read timeouts and retries. What is left
// behind ends when Redis answers or its client is closed (the owner does, next).
const (
	closeLoopWait  = 250 * time.Millisecond // the tick loop, the viewer counts' loop and the overdue sweep
	closeStockWait = time.Second            // held-back and gated stock values still published
	closeTurnWait  = 100 * time.Millisecond // stock turns after they are cancelled
	closeConnWait  = 500 * time.Millisecond // connections' goroutines (presence, unsubscribe)
)

// Close drops every connection (1001), waits for their goroutines and stops the hub,
// in about 2 s at most: goroutines stuck in calls to a Redis that does not answer are
// not waited for. The Bus and Presence stay open: their owner closes them.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	rooms := make([]*room, 0, len(h.rooms))
	for _, r := range h.rooms {
		rooms = append(rooms, r)
	}
	emitters := h.emitters
	h.emitters = map[string]*emitter{}
	h.mu.Unlock()
	close(h.stop)
	loopsBy := time.Now().Add(closeLoopWait)
	for _, done := range []<-chan struct{}{h.loopDone, h.presDone, h.sweepDone} {
		if !waitAtMost(done, time.Until(loopsBy)) {
			h.cfg.Logger.Warn("live: close: tick loop, viewer counts or stock sweep stuck (redis?); not waiting")
		}
	}
	// Held-back and gated stock values are still published (viewers on other nodes
	// must get the final value), for up to closeStockWait; then they are given up.
	for _, e := range emitters {
		h.goBackground(e.publishHeld)
	}
	h.backgroundMu.Lock()
	h.backgroundDone = true
	h.backgroundMu.Unlock()
	finished := waitGroupDone(&h.background)
	if !waitAtMost(finished, closeStockWait) {
		h.cfg.Logger.Warn("live: close: stock values not published in time; given up")
	}
	h.cancelBackground()
	waitAtMost(finished, closeTurnWait)
	for _, r := range rooms {
		r.closeAll(websocket.CloseGoingAway, "server shutting down", true)
	}
	if !waitAtMost(waitGroupDone(&h.conns), closeConnWait) {
		h.cfg.Logger.Warn("live: close: connections still releasing (redis?); not waiting")
	}
	h.writers.close()
	return nil
}

// waitGroupDone returns a channel closed once wg's count is zero.
func waitGroupDone(wg *sync.WaitGroup) <-chan struct{} {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
}

// waitAtMost waits for done for up to d; false when d passed first.
func waitAtMost(done <-chan struct{}, d time.Duration) bool {
	select {
	case <-done:
		return true
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// goBackground runs f in a goroutine that Close cancels (backgroundCtx) and waits for;
// false when the hub is closing.
func (h *Hub) goBackground(f func()) bool {
	h.backgroundMu.Lock()
	defer h.backgroundMu.Unlock()
	if h.backgroundDone {
		return false
	}
	h.background.Add(1)
	go func() {
		defer h.background.Done()
		f()
	}()
	return true
}

func (h *Hub) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// presenceLoop announces viewer counts and refreshes this node's counts in the shared
// Presence until Close. Apart from tickLoop: with Redis frozen each stream's calls wait
// their bound (2 s), a round over many streams far longer than the pings' interval,
// and the pings must go on meanwhile (a viewer not pinged for 2 intervals is dropped).
func (h *Hub) presenceLoop() {
	defer close(h.presDone)
	t := time.NewTicker(h.cfg.ViewersInterval / 4)
	defer t.Stop()
	refresh := time.NewTicker(10 * time.Second)
	defer refresh.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.announceViewers()
		case <-refresh.C:
			h.refreshPresence()
		}
	}
}

// pingTick is how often the hub pings a share of the connections: each connection in
// the tick of its slot (conn.pingSlot), once per PingInterval. Pinging all at once took
// a whole fan-out's time of the writer shards every interval (10,000 sends, then
// 10,000 pongs to read), and the event published meanwhile reached its viewers that
// much later: at 10,000 viewers × 10 events/s, 3 events in 300 at ~200 ms instead of
// ~80 (docs/BENCHMARKS.md, live channel, session 16).
const pingTick = time.Second

// pingSlots is the number of ping ticks in an interval (1 for intervals under 2 s).
func pingSlots(interval time.Duration) int { return max(1, int(interval/pingTick)) }

// tickLoop pings the connections, drops those too far behind and forgets idle chat
// limiters and emitters until Close; it never waits for Redis.
func (h *Hub) tickLoop() {
	defer close(h.loopDone)
	forget := time.NewTicker(10 * time.Second)
	defer forget.Stop()
	slots := pingSlots(h.cfg.PingInterval)
	tick := h.cfg.PingInterval / time.Duration(slots)
	ping := time.NewTicker(tick)
	defer ping.Stop()
	// A silent stream's heartbeat goes out on the tick nearest to HeartbeatAfter of
	// silence (up to half a tick early, at most a tenth of HeartbeatAfter), not on the
	// first tick past it: the silences a client sees are 5 s ± half a tick, where they
	// were 5–6 s against the watch page's 7 s before it pings.
	beatAfter := h.cfg.HeartbeatAfter - min(tick/2, h.cfg.HeartbeatAfter/10)
	slot := 0
	// Clients that fell behind are dropped by the next event, or by this sweep when
	// none comes: within a tenth of MaxBehind.
	behind := time.NewTicker(max(h.cfg.MaxBehind/10, 10*time.Millisecond))
	defer behind.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-ping.C:
			now := h.cfg.Now()
			var beat *frame
			for _, r := range h.roomList() {
				r.pingShare(slot, slots)
				beat = r.heartbeat(now, beatAfter, beat)
			}
			slot = (slot + 1) % slots
		case <-behind.C:
			now := h.cfg.Now()
			for _, r := range h.roomList() {
				r.dropBehind(now)
			}
		case <-forget.C:
			h.forgetIdle()
		}
	}
}

// sweepOverdueStock publishes, for the streams with viewers on this node, the stock
// values whose changes were counted at the gate by a node that then died before a
// value read after them was out (StockGate.OverdueStock), until Close. Without it a
// quiet sale's viewers would keep the older number until its next change.
func (h *Hub) sweepOverdueStock() {
	defer close(h.sweepDone)
	if h.stockGate == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-h.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	t := time.NewTicker(StockRescueAfter / 2)
	defer t.Stop()
	failing := false
	for tick := 1; ; tick++ {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		if tick%2 == 0 {
			h.rescueStaleStock(ctx)
		}
		for _, r := range h.roomList() {
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			keys, err := h.stockGate.OverdueStock(rctx, r.sid)
			rcancel()
			if err != nil {
				if !failing && ctx.Err() == nil {
					h.cfg.Logger.Warn("live: overdue stock", "stream", r.sid, "err", err)
				}
				failing = true
				break
			}
			failing = false
			if len(keys) == 0 {
				continue
			}
			if e := h.emitter(r.sid); e != nil {
				for _, k := range keys {
					e.rescueStock(k, false)
				}
				h.release(e)
			}
		}
	}
}

// rescueStaleStock compares, for the streams with viewers on this node whose turn it
// takes this second (StockGate.StaleTurn: one node per stream a second), the store's
// stock values with the ones last delivered to the viewers (StockGate.StaleStock) and
// publishes the store's value of each that differs and has not been published for
// StockRescueAfter; likewise sale and product events, pins and unpins, and the
// stream's end. This
// catches the changes no node counted at the gate or published (the node that made
// one died between the store's commit and counting or publishing it) and the product
// events held back by a node that died; the overdue sweep catches the counted ones.
// A stream whose reads fail is logged and counted, and the pass goes on with the
// others; it stops when the turn cannot be taken (the bus's Redis is down) or a read
// timed out (the store hangs): the next sweep tries again.
func (h *Hub) rescueStaleStock(ctx context.Context) {
	for _, r := range h.roomList() {
		if h.stopping() {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		turn, err := h.stockGate.StaleTurn(rctx, r.sid)
		if err != nil || !turn {
			cancel()
			if err != nil {
				h.metrics.staleChecks.WithLabelValues("failed").Inc()
				if ctx.Err() == nil {
					h.cfg.Logger.Debug("live: stale stock turn", "stream", r.sid, "err", err)
				}
				return
			}
			continue
		}
		if r.settledSales == nil {
			r.settledSales = map[string]bool{}
		}
		keys, stamp, err := h.staleStock(rctx, r.sid, r.settledSales)
		cancel()
		if errors.Is(err, cart.ErrNotFound) {
			continue
		}
		if err != nil {
			h.metrics.staleChecks.WithLabelValues("failed").Inc()
			if ctx.Err() == nil {
				lvl := slog.LevelDebug
				if !r.staleFailing {
					lvl = slog.LevelWarn
				}
				h.cfg.Logger.Log(ctx, lvl, "live: stale stock", "stream", r.sid, "err", err)
			}
			r.staleFailing = true
			if errors.Is(err, context.DeadlineExceeded) {
				return // the store or Redis hangs: the others would wait as long
			}
			continue
		}
		r.staleFailing = false
		h.metrics.staleChecks.WithLabelValues("compared").Inc()
		if len(keys) == 0 {
			continue
		}
		if e := h.emitter(r.sid); e != nil {
			var pins, sales, products []string
			ended := false
			for _, k := range keys {
				if id, ok := strings.CutPrefix(k, "sale:"); ok {
					sales = append(sales, id)
				} else if id, ok := strings.CutPrefix(k, "product:"); ok {
					products = append(products, id)
				} else if id, ok := strings.CutPrefix(k, "pin:"); ok {
					pins = append(pins, id)
				} else if k == "stream" {
					ended = true
				} else {
					e.rescueStock(k, true)
				}
			}
			if len(products) > 0 {
				e.rescueProducts(products, stamp)
			}
			if len(pins) > 0 {
				e.rescuePins(pins, stamp)
			}
			if ended {
				e.rescueStreamEnd(r, sales) // the sales' events first, then the end
			} else {
				for _, id := range sales {
					e.rescueSale(id)
				}
			}
			h.release(e)
		}
	}
}

// staleStock reads sid's stock values from the store (sales, and products not hidden:
// a hidden one's stock is nobody's business), its sales' statuses, its products'
// fields (productValue: a hidden one's is 0), which products are
// pinned (hidden ones too: a hide unpins) and whether it has ended, and returns the
// keys StaleStock finds and their stamp. The sales in settled (ended, their final
// values found delivered) are not read (a store that can leave them out:
// salesExceptReader); ended sales found settled are added to it. So a stream's
// comparison reads its scheduled and active sales and those ended since its last
// comparison, not every sale it ever had.
func (h *Hub) staleStock(ctx context.Context, sid string, settled map[string]bool) ([]string, int64, error) {
	st, err := h.cfg.Stock.GetStream(ctx, sid)
	if err != nil {
		return nil, 0, err
	}
	var sales []cart.Sale
	if r, ok := h.cfg.Stock.(salesExceptReader); ok {
		skip := make([]string, 0, len(settled))
		for id := range settled {
			skip = append(skip, id)
		}
		sales, err = r.ListSalesExcept(ctx, sid, skip)
	} else {
		sales, err = h.cfg.Stock.ListSales(ctx, sid)
	}
	if err != nil {
		return nil, 0, err
	}
	products, err := h.cfg.Stock.ListProducts(ctx, sid)
	if err != nil {
		return nil, 0, err
	}
	pinned, err := h.cfg.Stock.ListPinned(ctx, sid)
	if err != nil {
		return nil, 0, err
	}
	cur := make([]StockValue, 0, 2*len(sales)+3*len(products)+1)
	var final []StockValue
	for _, s := range sales {
		if settled[s.ID] {
			continue
		}
		vals := []StockValue{{"stock:" + s.ID, s.Remaining}, {"sale:" + s.ID, saleRank(s.Status)}}
		if s.Status == cart.SaleEnded {
			final = append(final, vals...)
		} else {
			cur = append(cur, vals...)
		}
	}
	for _, p := range products {
		if !p.Hidden {
			cur = append(cur, StockValue{"stock:product:" + p.ID, p.Stock})
		}
		cur = append(cur, StockValue{"product:" + p.ID, productValue(p)})
		in := 0
		for _, q := range pinned {
			if q.ID == p.ID {
				in = 1
				break
			}
		}
		cur = append(cur, StockValue{"pin:" + p.ID, in})
	}
	ended := 0
	if st.Status == cart.StreamEnded {
		ended = 1
	}
	cur = append(cur, StockValue{"stream", ended})
	keys, done, stamp, err := h.stockGate.StaleStock(ctx, sid, cur, final)
	if err != nil {
		return nil, 0, err
	}
	// A sale is settled once both its final values are.
	half := map[string]bool{}
	for _, k := range done {
		id, ok := strings.CutPrefix(k, "sale:")
		if !ok {
			id, ok = strings.CutPrefix(k, "stock:")
		}
		if !ok {
			continue
		}
		if half[id] {
			settled[id] = true
		}
		half[id] = true
	}
	return keys, stamp, nil
}

// salesExceptReader is a StockReader that reads a stream's sales but some
// (cart.RedisStore).
type salesExceptReader interface {
	ListSalesExcept(ctx context.Context, streamID string, skip []string) ([]cart.Sale, error)
}

// stopping reports whether Close has begun: loops over the rooms stop early (a call
// stuck in a hung Redis may have outlasted Close's wait).
func (h *Hub) stopping() bool {
	select {
	case <-h.stop:
		return true
	default:
		return false
	}
}

func (h *Hub) roomList() []*room {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*room, 0, len(h.rooms))
	for _, r := range h.rooms {
		out = append(out, r)
	}
	return out
}

func (h *Hub) announceViewers() {
	for _, r := range h.roomList() {
		if h.stopping() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n, err := h.cfg.Presence.Count(ctx, r.sid)
		if err == nil {
			var ok bool
			ok, err = h.cfg.Presence.Announce(ctx, r.sid, n, h.cfg.ViewersInterval)
			if ok {
				h.publish(ctx, r.sid, EventViewers, ViewersData{Count: n})
			}
		}
		cancel()
		if err != nil {
			h.cfg.Logger.Warn("live: viewers", "stream", r.sid, "err", err)
		}
	}
}

func (h *Hub) refreshPresence() {
	for _, r := range h.roomList() {
		if h.stopping() {
			return
		}
		r.presMu.Lock() // after a join's or leave's write, never racing it
		h.writePresence(r, "live: presence refresh")
		r.presMu.Unlock()
	}
}

// forgetIdle drops chat limiters that are full again and emitters with nothing pending.
func (h *Hub) forgetIdle() {
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, l := range h.limiters {
		if l.TokensAt(now) >= float64(h.cfg.ChatBurst) {
			delete(h.limiters, id)
		}
	}
	for sid, e := range h.emitters {
		if e.users == 0 && e.idle(now, h.cfg.CoalesceInterval) {
			delete(h.emitters, sid)
		}
	}
}

func (h *Hub) allowChat(sid, userID string) bool {
	k := chatKey{sid, userID}
	h.mu.Lock()
	l := h.limiters[k]
	if l == nil {
		l = rate.NewLimiter(h.cfg.ChatRate, h.cfg.ChatBurst)
		h.limiters[k] = l
	}
	h.mu.Unlock()
	return l.AllowN(h.cfg.Now(), 1)
}
