package live

import (
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/livecart/livecart/cart"
	"github.com/redis/go-redis/v9"
)

//go:embed lua/publish.lua
var publishLua string

var publishScript = redis.NewScript(publishLua)

//go:embed lua/publish_find.lua
var publishFindLua string

var publishFindScript = redis.NewScript(publishFindLua)

// EndedRetention is how long the Redis bus keeps an ended stream's seq and history, for
// viewers resuming right after the end; then Redis forgets them.
const EndedRetention = time.Hour

// RedisBus is the Bus of several nodes. A stream's seq counter and history (a Redis
// stream, trimmed to about HistorySize entries) are written by one Lua script that
// also publishes the frame; keys carry the {stream_id} hash tag. Each node holds one
// pub/sub connection, subscribed to the streams it has viewers of, and fills any gap
// in the seq numbers (a dropped and re-established subscription) from the history.
type RedisBus struct {
	rdb     redis.UniversalClient
	prefix  string
	now     func() time.Time
	log     *slog.Logger
	lostLog *cart.OutageLog // the subscription's failures while Redis is down
	history int
	ps      *redis.PubSub
	stop    context.CancelFunc
	done    chan struct{}

	cmdMu sync.Mutex // serialises (un)subscribe decisions with their commands

	mu   sync.Mutex           // guards subs and each sub's fields; held while delivering
	subs map[string]*redisSub // by stream id

	seenMu sync.Mutex
	seen   map[string]seenPub // guarded by seenMu: the newest seq a publication here got, by stream
}

// seenPub is a publication's seq and id.
type seenPub struct {
	seq int64
	id  string
}

// maxSeen bounds RedisBus.seen (then it starts again empty: a retry without a bound
// only reads more of the history).
const maxSeen = 10_000

var _ Bus = (*RedisBus)(nil)

type redisSub struct {
	last int64 // last seq delivered; -1 until the subscription is confirmed
	// lastFrame is the frame at last (nil: unknown, or none): a restarted log's event
	// at that seq is another frame (its ts).
	lastFrame []byte
	// msgSeq is the seq of the channel's last message since the subscription was
	// (re)confirmed (0: none yet). Messages come in publication order, so their seq
	// rises; one not above it belongs to a restarted log.
	msgSeq  int64
	initial int64         // last at confirmation: new subscribers get every later record
	ready   chan struct{} // closed at confirmation
	stale   bool          // a gap could not be filled yet: retry
	fns     map[int]func(Record)
	next    int
}

// NewRedisBus starts a RedisBus on rdb with keys under prefix. now and log may be nil.
func NewRedisBus(rdb redis.UniversalClient, prefix string, now func() time.Time, log *slog.Logger) *RedisBus {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &RedisBus{
		rdb: rdb, prefix: prefix, now: now, log: log, history: HistorySize,
		ps: rdb.Subscribe(ctx), stop: cancel, done: make(chan struct{}), subs: map[string]*redisSub{},
		seen: map[string]seenPub{},
	}
	b.lostLog = cart.NewOutageLog(log, "live: redis subscription", 0, nil)
	go b.receiveLoop(ctx)
	return b
}

// NewRedisClient is the client a node's live channel (bus, presence, stock gate) uses
// on the Redis at url (redis://host:port/db). One attempt per command, as the cart
// store's: go-redis by default sends a command again after a read timeout, and the
// publish script run twice would give one event two seq numbers (viewers would see it
// twice). A call whose reply is lost answers an error; what it did is in the history.
func NewRedisClient(url string) (*redis.Client, error) { return NewRedisClientNamed(url, "") }

// NewRedisClientNamed is NewRedisClient with its connections named name in Redis (as
// CLIENT LIST shows them) unless the URL names them (client_name=...).
func NewRedisClientNamed(url, name string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	if opt.ClientName == "" {
		opt.ClientName = name
	}
	opt.MaxRetries = -1
	opt.DialTimeout = 3 * time.Second
	opt.ReadTimeout = 3 * time.Second
	opt.WriteTimeout = 3 * time.Second
	// Calls end at their context's deadline (a publish's 5 s in all, a request's
	// bound), not after 3 s a try.
	opt.ContextTimeoutEnabled = true
	opt.DisableIdentity = true
	opt.Dialer = abortingDialer(opt.DialTimeout, opt.TLSConfig)
	return redis.NewClient(opt), nil
}

// abortingDialer dials connections that are aborted when closed (SO_LINGER 0: a reset,
// what the kernel has not yet delivered is dropped). go-redis closes a connection
// whose call failed (a try of a publication that timed out); closed the usual way, the
// kernel would go on sending the try's bytes to a Redis it cannot reach, for up to
// ~100 s (tcp_orphan_retries), and the try could run after a later try of the same
// publication had run and its record (60 s) had gone: the event out twice, with two
// seqs. Aborted, a try reaches Redis before it is given up or never. With tlsConf
// (a rediss:// URL) TLS runs over such a connection, as go-redis's own dialer would
// run it over its plain one.
func abortingDialer(timeout time.Duration, tlsConf *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	// Keep-alive as go-redis's own dialer: an idle connection to a peer gone without a
	// reset is dropped after ~45 s, not taken for a try that then waits its 5 s.
	d := &net.Dialer{Timeout: timeout, KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3,
	}}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if tc, ok := c.(*net.TCPConn); ok {
			if err := tc.SetLinger(0); err != nil {
				c.Close()
				return nil, err
			}
		}
		if tlsConf == nil {
			return c, nil
		}
		return tlsClient(ctx, c, tlsConf, addr, timeout)
	}
}

// tlsClient runs a TLS client handshake over c within timeout (c is closed if it
// fails). An empty ServerName is taken from addr, as tls.Dial does.
func tlsClient(ctx context.Context, c net.Conn, conf *tls.Config, addr string, timeout time.Duration) (net.Conn, error) {
	if conf.ServerName == "" && !conf.InsecureSkipVerify {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		conf = conf.Clone()
		conf.ServerName = host
	}
	tc := tls.Client(c, conf)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

func (b *RedisBus) key(sid, name string) string { return b.prefix + ":live:{" + sid + "}:" + name }

func (b *RedisBus) channel(sid string) string { return b.key(sid, "events") }

// streamOf returns the stream id inside a channel name's hash tag.
func streamOf(channel string) string {
	i := strings.LastIndexByte(channel, '{')
	j := strings.LastIndexByte(channel, '}')
	if i < 0 || j < i {
		return ""
	}
	return channel[i+1 : j]
}

// Publish implements Bus. A call that fails for a cause that may pass (Redis
// unreachable or not answering, a reply lost) is sent again with the same publication
// id until ctx ends, each try bounded by PublishTryTimeout: the script publishes an id
// once, so the event gets one seq however often it is sent. The id is remembered for a
// minute after the event went out: a try that reached Redis and ran later (a freeze)
// is found by the tries after it. It is also in the event's history entry, where each
// retry looks it up first (publish_find.lua): a try that ran but whose answer was lost,
// followed by more than a minute without Redis, is found there as long as the history
// holds it. A try given up is reset on its connection (abortingDialer): it reaches
// Redis before the next try is sent, or never.
func (b *RedisBus) Publish(ctx context.Context, sid, typ string, body []byte) (Record, error) {
	return b.PublishSeen(ctx, sid, typ, body, nil, false)
}

// PublishSeen is Publish for an event carrying stock values or a sale's status (seen):
// they are recorded as delivered to the stream's viewers in the same atomic step (see
// StockGate.StaleStock). An event carrying a sale status behind the recorded one is
// dropped (Record{}, no error): a sale event read before a newer one went out (a late
// start after the end) never undoes it. With onlyNewer, it is dropped unless each
// sale status in seen is further on than the one recorded.
func (b *RedisBus) PublishSeen(ctx context.Context, sid, typ string, body []byte, seen []StockValue, onlyNewer bool) (Record, error) {
	return b.publishSeen(ctx, sid, typ, body, seen, onlyNewer, 0)
}

// PublishRescued is PublishSeen for a pin, unpin or product event the node-death
// rescue publishes (the store's state read after StaleStock returned its key with
// stamp): it is dropped (Record{}, no error) if a pin or unpin (a product event) of the
// product went out since the comparison, whose state may be newer than the one read.
func (b *RedisBus) PublishRescued(ctx context.Context, sid, typ string, body []byte, seen []StockValue, stamp int64) (Record, error) {
	return b.publishSeen(ctx, sid, typ, body, seen, false, stamp)
}

func (b *RedisBus) publishSeen(ctx context.Context, sid, typ string, body []byte, seen []StockValue, onlyNewer bool, stamp int64) (Record, error) {
	var keepMs int64 // for ever
	if typ == EventStream && isStreamEnded(buildFrame(typ, 0, body)) {
		keepMs = EndedRetention.Milliseconds()
	}
	id := uuid.NewString()
	keys := []string{b.key(sid, "seq"), b.key(sid, "history"), b.key(sid, "pub:"+id)}
	args := []any{quoteType(typ), body, b.history, b.channel(sid), keepMs, stockKeep.Milliseconds(), len(seen)}
	if len(seen) > 0 {
		keys = append(keys, b.key(sid, "stockseen"))
		args = appendStockValues(args, seen)
		switch {
		case stamp > 0:
			args = append(args, 0, stamp)
		case onlyNewer:
			args = append(args, 1)
		}
	}
	after := b.seenSeq(sid) // before the first try: its event, if it ran, is later
	wait, tries := publishFirstWait, 0
	for {
		tctx, cancel := context.WithTimeout(ctx, PublishTryTimeout)
		var res []any
		var err error
		if tries > 0 {
			// A try whose reply was lost may have run long ago (its record gone).
			res, err = publishFindScript.Run(tctx, b.rdb, []string{keys[2], keys[1]}, id, after.seq, after.id).Slice()
			if err == nil {
				if seq, _ := res[0].(int64); seq == 0 {
					res, err = nil, nil
				}
			}
		}
		if res == nil && err == nil {
			res, err = publishScript.Run(tctx, b.rdb, keys, args...).Slice()
		}
		cancel()
		if err == nil {
			seq, _ := res[0].(int64)
			frame, _ := res[1].(string)
			if seq == 0 {
				return Record{}, nil // not newer (onlyNewer), or a pin since the stamp
			}
			b.noteSeq(sid, seenPub{seq, id}, keepMs > 0)
			if frame == "" {
				frame = string(buildFrame(typ, seq, body)) // trimmed from the history since
			}
			if tries > 0 {
				b.log.Info("live: publish: out after tries that failed", "stream", sid, "type", typ, "seq", seq, "failed", tries)
			}
			return Record{Seq: seq, Frame: []byte(frame)}, nil
		}
		if ctx.Err() != nil || !retryable(err) {
			return Record{}, fmt.Errorf("live: publish: %w", err)
		}
		if tries++; tries == 1 {
			b.log.Warn("live: publish: redis did not answer; sending again with the same id", "stream", sid, "type", typ, "err", err)
		}
		select {
		case <-ctx.Done():
			return Record{}, fmt.Errorf("live: publish: %w", err)
		case <-time.After(wait):
		}
		wait = min(2*wait, publishMaxWait)
	}
}

// seenSeq is the newest seq a publication of this node got for the stream (0: none),
// and that publication's id: the stream had reached it before now, unless Redis lost
// the stream's keys since (publish_find.lua checks that the history entry at that seq
// is still that publication's).
func (b *RedisBus) seenSeq(sid string) seenPub {
	b.seenMu.Lock()
	defer b.seenMu.Unlock()
	return b.seen[sid]
}

// noteSeq records pub, a publication's seq and id, for seenSeq; ended forgets the
// stream.
func (b *RedisBus) noteSeq(sid string, pub seenPub, ended bool) {
	b.seenMu.Lock()
	defer b.seenMu.Unlock()
	switch last, ok := b.seen[sid]; {
	case ended:
		delete(b.seen, sid)
	case pub.seq <= last.seq:
	case !ok && len(b.seen) >= maxSeen:
		clear(b.seen)
		fallthrough
	default:
		b.seen[sid] = pub
	}
}

// PublishTryTimeout bounds each try of a publication (a Redis that does not answer:
// the try is given up and the publication sent again with its id).
const PublishTryTimeout = 5 * time.Second

// The waits between a publication's tries: 50 ms, doubling up to 1 s.
const (
	publishFirstWait = 50 * time.Millisecond
	publishMaxWait   = time.Second
)

// retryable tells a failure that may pass (Redis unreachable, slow, restarting, a
// connection lost) from an answer that will not change (a script error) or a client
// closed.
func retryable(err error) bool {
	if errors.Is(err, redis.ErrClosed) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		return strings.HasPrefix(msg, "LOADING") || strings.HasPrefix(msg, "BUSY") ||
			strings.HasPrefix(msg, "TRYAGAIN") || strings.HasPrefix(msg, "READONLY") ||
			strings.HasPrefix(msg, "MASTERDOWN") || strings.HasPrefix(msg, "CLUSTERDOWN")
	}
	return true
}

// Subscribe implements Bus.
func (b *RedisBus) Subscribe(ctx context.Context, sid string, fn func(Record)) (int64, func(), error) {
	b.cmdMu.Lock()
	b.mu.Lock()
	s := b.subs[sid]
	isNew := s == nil
	if isNew {
		s = &redisSub{last: -1, ready: make(chan struct{}), fns: map[int]func(Record){}}
		b.subs[sid] = s
	}
	id := s.next
	s.next++
	s.fns[id] = fn
	ready, last := s.last >= 0, s.last
	b.mu.Unlock()
	cancel := func() { b.unsubscribe(sid, s, id) }
	if isNew {
		if err := b.ps.Subscribe(ctx, b.channel(sid)); err != nil {
			b.cmdMu.Unlock()
			cancel()
			return 0, nil, fmt.Errorf("live: subscribe: %w", err)
		}
	}
	b.cmdMu.Unlock()
	if ready {
		return last, cancel, nil
	}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-s.ready:
		b.mu.Lock()
		defer b.mu.Unlock()
		return s.initial, cancel, nil
	case <-ctx.Done():
		cancel()
		return 0, nil, ctx.Err()
	case <-t.C:
		cancel()
		return 0, nil, errors.New("live: subscribe: no confirmation from redis")
	}
}

func (b *RedisBus) unsubscribe(sid string, s *redisSub, id int) {
	b.cmdMu.Lock()
	defer b.cmdMu.Unlock()
	b.mu.Lock()
	delete(s.fns, id)
	empty := len(s.fns) == 0 && b.subs[sid] == s
	if empty {
		delete(b.subs, sid)
	}
	b.mu.Unlock()
	if empty {
		// Bounded: the pub/sub's lock is held meanwhile. If it fails, the channel is
		// still left out of the resubscription, and its messages are ignored here.
		ctx, cancel := context.WithTimeout(context.Background(), lockedCallTimeout)
		defer cancel()
		if err := b.ps.Unsubscribe(ctx, b.channel(sid)); err != nil {
			b.log.Warn("live: unsubscribe", "stream", sid, "err", err)
		}
	}
}

// receiveLoop reads the pub/sub connection until Close. go-redis reconnects and
// resubscribes after an error; each confirmation triggers a catch-up from history.
func (b *RedisBus) receiveLoop(ctx context.Context) {
	defer close(b.done)
	for {
		// The context bounds the (re)connection, made with the pub/sub's lock held
		// (every (un)subscription waits for it), and with it the read (go-redis takes
		// the shorter of the two): an idle node pings and retries stale streams every
		// lockedCallTimeout.
		cctx, cancel := context.WithTimeout(ctx, lockedCallTimeout)
		msg, err := b.ps.ReceiveTimeout(cctx, lockedCallTimeout)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				b.retryStale(ctx)
				// A dead connection fails here and is replaced. Bounded: the pub/sub's
				// lock is held meanwhile, and every (un)subscription waits for it.
				pctx, cancel := context.WithTimeout(ctx, lockedCallTimeout)
				_ = b.ps.Ping(pctx)
				cancel()
				continue
			}
			b.lostLog.Fail(err)
			b.markAllStale()
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		b.lostLog.OK()
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				b.catchUp(ctx, streamOf(m.Channel), true)
			}
		case *redis.Message:
			b.onMessage(ctx, streamOf(m.Channel), m.Payload)
		}
	}
}

func (b *RedisBus) markAllStale() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.subs {
		s.stale = true
	}
}

func (b *RedisBus) retryStale(ctx context.Context) {
	b.mu.Lock()
	var sids []string
	for sid, s := range b.subs {
		if s.stale || s.last < 0 {
			sids = append(sids, sid)
		}
	}
	b.mu.Unlock()
	for _, sid := range sids {
		if !b.catchUp(ctx, sid, false) {
			return // Redis does not answer: the next tick tries again
		}
	}
}

// lockedCallTimeout bounds each Redis call the bus makes holding a lock that every
// stream's delivery, subscription or unsubscription waits for (b.mu for history reads,
// the pub/sub's own for its connection): a Redis that does not answer holds them up
// this long at most, and the call is tried again later.
const lockedCallTimeout = 500 * time.Millisecond

// catchUp initialises a new subscription, or delivers what history holds beyond the
// last delivered seq (after a resubscription: confirmed).
// It reports false when Redis did not answer.
func (b *RedisBus) catchUp(ctx context.Context, sid string, confirmed bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.subs[sid]
	if s == nil {
		return true
	}
	if confirmed {
		s.msgSeq = 0
	}
	if s.last < 0 {
		n, frame, err := b.readHead(ctx, sid)
		if err != nil {
			b.log.Warn("live: read seq", "stream", sid, "err", err)
			return false // retried on the next tick
		}
		s.last, s.initial, s.lastFrame = n, n, frame
		close(s.ready)
		return true
	}
	return b.fill(ctx, sid, s, "+")
}

// readHead reads the stream's last seq and, when its history holds it, that event's
// frame, in one atomic step (bounded: b.mu is held).
func (b *RedisBus) readHead(ctx context.Context, sid string) (int64, []byte, error) {
	rctx, cancel := context.WithTimeout(ctx, lockedCallTimeout)
	defer cancel()
	var get *redis.StringCmd
	var top *redis.XMessageSliceCmd
	_, err := b.rdb.TxPipelined(rctx, func(p redis.Pipeliner) error {
		get = p.Get(rctx, b.key(sid, "seq"))
		top = p.XRevRangeN(rctx, b.key(sid, "history"), "+", "-", 1)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, nil, err
	}
	n, err := get.Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, nil, err
	}
	var frame []byte
	if es := top.Val(); len(es) == 1 && es[0].ID == strconv.FormatInt(n, 10)+"-0" {
		f, _ := es[0].Values["f"].(string)
		frame = []byte(f)
	}
	return n, frame, nil
}

// fill delivers the history records after s.last up to through ("+": all). It reads
// the entry at s.last too: if that is not the frame delivered there, or history holds
// nothing from s.last on, the stream's log restarted (Redis lost its data) and the
// subscribers start again from its head (restart). Called with b.mu held.
func (b *RedisBus) fill(ctx context.Context, sid string, s *redisSub, through string) bool {
	from := s.last + 1
	if s.last > 0 {
		from = s.last
	}
	rctx, cancel := context.WithTimeout(ctx, lockedCallTimeout)
	entries, err := b.rdb.XRange(rctx, b.key(sid, "history"), strconv.FormatInt(from, 10), through).Result()
	cancel()
	if err != nil {
		b.log.Warn("live: read history", "stream", sid, "err", err)
		s.stale = true
		return false
	}
	if from == s.last {
		if len(entries) == 0 {
			return b.restart(ctx, sid, s) // the log is behind what was delivered
		}
		if entries[0].ID == strconv.FormatInt(s.last, 10)+"-0" {
			frame, _ := entries[0].Values["f"].(string)
			if s.lastFrame != nil && frame != string(s.lastFrame) {
				return b.restart(ctx, sid, s) // another event at that seq
			}
			entries = entries[1:]
		} // else s.last was trimmed away: what follows is checked as before
	}
	for _, e := range entries {
		seq, err := strconv.ParseInt(strings.TrimSuffix(e.ID, "-0"), 10, 64)
		frame, _ := e.Values["f"].(string)
		if err != nil || seq <= s.last {
			continue
		}
		if seq > s.last+1 { // trimmed away during the outage: viewers must resync
			b.deliver(s, Record{Seq: seq, Lost: true})
		}
		b.deliver(s, Record{Seq: seq, Frame: []byte(frame)})
	}
	s.stale = false
	return true
}

// restart makes the subscribers of a stream whose log restarted (its seq went back:
// Redis restarted from an older snapshot, or lost its data) start again from the
// log's head: they get a Reset record at its seq, then the records after it. Called
// with b.mu held; false when Redis did not answer (retried as a gap).
func (b *RedisBus) restart(ctx context.Context, sid string, s *redisSub) bool {
	n, frame, err := b.readHead(ctx, sid)
	if err != nil {
		b.log.Warn("live: read seq", "stream", sid, "err", err)
		s.stale = true
		return false
	}
	b.log.Warn("live: the stream's event log restarted (redis lost its data?); its viewers start again from a snapshot",
		"stream", sid, "delivered", s.last, "seq", n)
	s.last, s.lastFrame, s.stale = n, frame, false
	for _, fn := range s.fns {
		fn(Record{Seq: n, Reset: true})
	}
	return true
}

func (b *RedisBus) deliver(s *redisSub, rec Record) {
	if !rec.Lost {
		s.last, s.lastFrame = rec.Seq, rec.Frame
	}
	for _, fn := range s.fns {
		fn(rec)
	}
}

func (b *RedisBus) onMessage(ctx context.Context, sid, payload string) {
	var head frameHead
	if err := json.Unmarshal([]byte(payload), &head); err != nil || head.Seq <= 0 {
		b.log.Warn("live: bad frame on channel", "stream", sid, "err", err)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.subs[sid]
	if s == nil || s.last < 0 {
		return // not ours yet
	}
	prev := s.msgSeq
	s.msgSeq = head.Seq
	if head.Seq <= s.last {
		switch {
		case prev > 0 && head.Seq <= prev:
			b.restart(ctx, sid, s) // the seq went back
		case prev == 0:
			// The first since the subscription: delivered from history, unless the log
			// restarted since (fill checks the entry at s.last).
			b.fill(ctx, sid, s, strconv.FormatInt(s.last, 10))
		}
		return // else already delivered from history
	}
	if head.Seq > s.last+1 || s.stale {
		// A gap: fill it from history (which holds this record too).
		b.fill(ctx, sid, s, strconv.FormatInt(head.Seq, 10))
		return
	}
	b.deliver(s, Record{Seq: head.Seq, Frame: []byte(payload)})
}

// Since implements Bus.
func (b *RedisBus) Since(ctx context.Context, sid string, after, through int64) ([]Record, bool, error) {
	if after >= through {
		return []Record{}, true, nil
	}
	entries, err := b.rdb.XRange(ctx, b.key(sid, "history"), strconv.FormatInt(after+1, 10), strconv.FormatInt(through, 10)).Result()
	if err != nil {
		return nil, false, fmt.Errorf("live: history: %w", err)
	}
	if int64(len(entries)) != through-after {
		return nil, false, nil
	}
	out := make([]Record, 0, len(entries))
	for i, e := range entries {
		frame, _ := e.Values["f"].(string)
		out = append(out, Record{Seq: after + 1 + int64(i), Frame: []byte(frame)})
	}
	return out, true, nil
}

// Mute implements Bus.
func (b *RedisBus) Mute(ctx context.Context, sid, userID string, until time.Time) error {
	ttl := until.Sub(b.now())
	if ttl <= 0 {
		return b.Unmute(ctx, sid, userID)
	}
	return b.rdb.Set(ctx, b.key(sid, "mute:"+userID), until.UnixMilli(), ttl).Err()
}

// Unmute implements Bus.
func (b *RedisBus) Unmute(ctx context.Context, sid, userID string) error {
	return b.rdb.Del(ctx, b.key(sid, "mute:"+userID)).Err()
}

// MutedUntil implements Bus.
func (b *RedisBus) MutedUntil(ctx context.Context, sid, userID string) (time.Time, bool, error) {
	ms, err := b.rdb.Get(ctx, b.key(sid, "mute:"+userID)).Int64()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	until := time.UnixMilli(ms).UTC()
	return until, until.After(b.now()), nil
}

// Close implements Bus. It does not close the Redis client.
func (b *RedisBus) Close() error {
	b.stop()
	err := b.ps.Close()
	<-b.done
	return err
}
