package live

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
)

// MaxClientFrame is the largest frame a client may send; a larger one closes with 1009.
const MaxClientFrame = 4 << 10

// maxQueueFrames bounds a connection's queue by count as well as by bytes.
const maxQueueFrames = 8192

// ServeOptions describe the connecting viewer.
type ServeOptions struct {
	Who auth.Identity // zero: anonymous (may listen, not chat)
	// WhoUntil is when Who's token expires (zero: never); from then on the
	// connection may still listen but not chat.
	WhoUntil time.Time
	Ended    bool // the stream has ended: send the snapshot (or history), then close
	// Snapshots reads the stream's state for this connection; nil: the hub's Config.Snapshots.
	Snapshots SnapshotSource
}

// conn is one websocket viewer. The reader runs in its own goroutine. Data frames and
// pings go out from the connection's writer shard (one non-blocking send per event or
// ping tick). Only while the socket would block, or to close, does the connection get
// a writer goroutine of its own, started on demand and ended once caught up, so an
// idle connection costs one goroutine (the reader). Hub goroutines only append to the
// queue, never wait.
type conn struct {
	// The fields put (deliver's queuing) and flushFast (the shard's send) touch for every
	// event come first and end inside bcMem: its lock, closed flag and descriptor. With
	// conn's size a multiple of 64 bytes that is also its size class (connSize), every
	// conn starts a cache line, so they are three lines (hotBytes), which prefetch asks
	// for. TestConnHotFieldsInThreeLines checks both.
	mu          sync.Mutex // guards the fields from here to bcMem
	queue       []*frame
	spare       []*frame // a previous batch, reused
	queuedBytes int
	// sendingAt is when the oldest frame of the batch being written (by the shard or
	// the writer goroutine) arrived; zero when none is under way.
	sendingAt  time.Time
	closeCode  int          // once set, nothing more is queued
	hub        *Hub         // put reads its config
	shard      *writerShard // put hands c to it
	closeNow   bool         // close without sending the queue (slow client, shutdown)
	readerGone bool         // the reader has stopped: the writer stops too
	pingDue    bool         // the hub's ping tick asks for a ping
	// writerOn: a writer goroutine runs (or, until start has queued the first frames,
	// is reserved); kick: it has something to do. signal starts one when none runs.
	writerOn bool
	kick     bool
	// inWriter: the writer goroutine owns data writes (from the start, until the
	// snapshot is out; while the socket would block; once closing); else the shard does.
	inWriter   bool
	inShard    bool // c is on its shard's pending list
	shardBusy  bool // the shard is sending: the writer goroutine waits for its signal
	failed     bool // a send failed: the writer goroutine ends the connection
	writerGone bool // the writer goroutine has ended: nothing more is sent

	// bcMem is bc's memory, right after mu and the fields it guards, so that the
	// shard's pass over a connection finds both locks and the socket in the same cache
	// lines of one allocation (they were two allocations: a cache miss more per
	// delivery).
	bcMem batchConn

	// Cold: guarded by mu too, but not touched per event.
	closeReason string
	writerExit  chan struct{} // the reader waits on it for the writer to end; closed then
	handoff     []byte        // the rest of a send the shard began; bc.mu is held for it

	sid      string
	who      auth.Identity
	whoUntil time.Time // ServeOptions.WhoUntil
	snaps    SnapshotSource
	ws       *websocket.Conn
	bc       *batchConn
	roomIdx  int           // index in room.conns, guarded by room.mu
	inRoom   bool          // in room.conns, guarded by room.mu
	beats    bool          // the client asked for heartbeats (?heartbeat=1); set before it joins
	pingSlot int           // its ping tick (modulo the slots: room.pingShare); set by room.add, guarded by room.mu
	deadline time.Time     // the write deadline set last; only the writer touches it
	done     chan struct{} // closed when the reader stops

	_ [8]byte // to connSize
}

// refuseUpgrade answers a refused handshake (not a websocket request, an Origin not
// allowed) in the API's error shape instead of the websocket library's plain text.
func refuseUpgrade(w http.ResponseWriter, _ *http.Request, status int, reason error) {
	code := "bad_request"
	switch {
	case status == http.StatusForbidden:
		code = "forbidden"
	case status == http.StatusMethodNotAllowed:
		code = "method_not_allowed"
	case status >= 500:
		code = "internal"
	}
	writeAPIError(w, status, code, reason.Error())
}

// writeAPIError writes {"error":{"code","message"}} with status.
func writeAPIError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(map[string]map[string]string{"error": {"code": code, "message": msg}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// ServeWS upgrades the request and serves sid's events until the connection ends.
// The web layer has already checked that the stream exists and who is asking.
func (h *Hub) ServeWS(w http.ResponseWriter, r *http.Request, sid string, opt ServeOptions) {
	res, err := parseSince(r)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_request", "since must be a non-negative integer")
		return
	}
	snaps := opt.Snapshots
	if snaps == nil {
		snaps = h.cfg.Snapshots
	}
	c := &conn{hub: h, sid: sid, who: opt.Who, whoUntil: opt.WhoUntil, snaps: snaps, shard: h.writers.pick(),
		done: make(chan struct{}), inWriter: true, writerOn: true, kick: true,
		beats: r.URL.Query().Get("heartbeat") == "1"}
	c.bc = &c.bcMem
	hw := &hijackWriter{ResponseWriter: w, hj: http.NewResponseController(w), bc: c.bc}
	ws, err := h.upgrader.Upgrade(hw, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	c.ws = ws
	h.conns.Add(1)
	// The connection's context is not the request's: the handler returns once the
	// reader and writer run, so that its grown stack and the request are freed.
	ctx, cancel := context.WithCancel(context.Background())
	// The join's calls (subscription, history, snapshot) end within JoinTimeout: a
	// Redis that does not answer costs the client that long, then 1013. Not a child
	// of ctx, which nothing cancels during the join: a child leaves ctx a map of its
	// children for the connection's life (~0.6 KiB a connection at 10,000 viewers).
	jctx, jcancel := context.WithTimeout(context.Background(), h.cfg.JoinTimeout)
	defer jcancel()
	rm, err := h.acquireRoom(jctx, sid)
	if err != nil {
		h.cfg.Logger.Warn("live: join", "stream", sid, "err", err)
		c.writeCloseDirect(websocket.CloseTryAgainLater, "unavailable")
		ws.Close()
		cancel()
		h.conns.Done()
		return
	}
	if err := c.start(jctx, rm, res, opt.Ended); err != nil {
		h.cfg.Logger.Warn("live: start", "stream", sid, "err", err)
		c.writeCloseDirect(websocket.CloseTryAgainLater, "unavailable")
		c.finish(rm, cancel)
		return
	}
	jcancel()
	h.metrics.connections.Inc()
	go c.writeLoop() // the reserved writer: it sends the first frames
	go func() {
		c.readLoop(ctx)
		close(c.done)
		c.stopWriter()
		c.endWrites()
		h.metrics.connections.Dec()
		c.finish(rm, cancel)
	}()
}

// finish releases what a connection held once its goroutines have ended.
func (c *conn) finish(rm *room, cancel context.CancelFunc) {
	c.ws.Close()
	rm.remove(c)
	c.hub.setPresence(rm)
	c.hub.releaseRoom(rm)
	cancel()
	c.hub.conns.Done()
}

// resume is what a client resuming asks for: the events after since (has), and, with
// hasTs, only if its event at since is the history's (its ts is sinceTs).
type resume struct {
	since   int64
	has     bool
	sinceTs string
	hasTs   bool
}

func parseSince(r *http.Request) (resume, error) {
	q := r.URL.Query()
	s := q.Get("since")
	if s == "" {
		return resume{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) && n > 0 {
		// A whole number beyond 64 bits is newer than any seq: a fresh snapshot.
		err = nil
	}
	if err != nil || n < 0 {
		return resume{}, errors.New("bad since")
	}
	return resume{since: n, has: true, sinceTs: q.Get("since_ts"), hasTs: q.Has("since_ts")}, nil
}

// setPresence writes rm's count to the shared Presence after a change of its
// connections, unless a write that read the count after the change is done (or being
// tried: a Redis that does not answer costs each join one write's bound, not one per
// join before it).
func (h *Hub) setPresence(rm *room) {
	g := rm.presGen.Add(1)
	rm.presMu.Lock()
	defer rm.presMu.Unlock()
	if rm.presDone >= g {
		return
	}
	h.writePresence(rm, "live: presence")
}

// writePresence writes rm's count; the caller holds rm.presMu.
func (h *Hub) writePresence(rm *room, what string) {
	g := rm.presGen.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := h.cfg.Presence.SetLocal(ctx, rm.sid, rm.count())
	rm.presDone = g // tried: a failed write is mended by the next refresh, as before
	if err != nil {
		h.cfg.Logger.Warn(what, "stream", rm.sid, "err", err)
	}
}

// start registers c in the room and queues its first frames: the missed events when
// the resume can be served from history, else a snapshot.
func (c *conn) start(ctx context.Context, rm *room, res resume, ended bool) error {
	last, lastTs, roomEnded := rm.add(c)
	if c.hub.isClosed() { // Close may have listed the room's connections before this one
		c.drop(websocket.CloseGoingAway, "server shutting down")
	}
	c.hub.setPresence(rm)
	var first []*frame
	resumed := false
	if res.has && res.since <= last {
		recs, ok, err := c.history(ctx, res, last)
		if err != nil {
			return err
		}
		if ok {
			resumed = true
			now := c.hub.cfg.Now()
			for _, rec := range recs {
				first = append(first, newFrame(rec.Seq, rec.Frame, now))
			}
		}
	}
	if !resumed {
		f, err := c.hub.snapshotFrame(ctx, c.snaps, c.sid, last, rm.seqTs(ctx, last, lastTs))
		if err != nil {
			return err
		}
		first = []*frame{f}
	}
	c.mu.Lock()
	c.queue = append(first, c.queue...)
	for _, f := range first {
		c.queuedBytes += f.size
	}
	c.mu.Unlock()
	if ended || roomEnded {
		c.closeAfterQueue(websocket.CloseNormalClosure, "stream ended")
	}
	c.signal()
	return nil
}

// history returns the records after res.since up to last, ok false when the bus's
// history cannot serve them. With since_ts (res.hasTs) it must also hold the event at
// since with that very ts: a client whose event at since is another log's (Redis lost
// the stream's log or went back to an older snapshot, the embedded node restored an
// older data file, and the new log's seq has passed since) would otherwise be sent
// events that do not follow its own. At since 0 (no event: nothing to check) it
// cannot.
func (c *conn) history(ctx context.Context, res resume, last int64) ([]Record, bool, error) {
	if !res.hasTs {
		return c.hub.cfg.Bus.Since(ctx, c.sid, res.since, last)
	}
	if res.since == 0 {
		return nil, false, nil
	}
	recs, ok, err := c.hub.cfg.Bus.Since(ctx, c.sid, res.since-1, last)
	if err != nil || !ok || len(recs) == 0 || string(frameTs(recs[0].Frame)) != res.sinceTs {
		return nil, false, err
	}
	return recs[1:], true, nil
}

// snapshotFrame reads sid's state from snaps into a snapshot frame at seq, with seqTs,
// the ts of the event at seq (none when nil).
func (h *Hub) snapshotFrame(ctx context.Context, snaps SnapshotSource, sid string, seq int64, seqTs []byte) (*frame, error) {
	snap, err := snaps.Snapshot(ctx, sid)
	if err != nil {
		return nil, err
	}
	snap.Viewers = h.Viewers(ctx, sid)
	snap.SeqTs = string(seqTs)
	if snap.Pinned == nil {
		snap.Pinned = []cart.Product{}
	}
	if snap.Sales == nil {
		snap.Sales = []cart.Sale{}
	}
	now := h.cfg.Now()
	body, err := encodeBody(now, snap)
	if err != nil {
		return nil, err
	}
	return newFrame(seq, buildFrame(EventSnapshot, seq, body), now), nil
}

// requestPing asks for a ping: from the shard (the caller puts c on its pending list
// when toShard), or from the writer goroutine while it owns the writes.
func (c *conn) requestPing() (toShard bool) {
	c.mu.Lock()
	if c.closeCode != 0 {
		c.mu.Unlock()
		return false
	}
	c.pingDue = true
	inWriter := c.inWriter
	toShard = !inWriter && !c.inShard
	if toShard {
		c.inShard = true
	}
	c.mu.Unlock()
	if inWriter {
		c.signal()
	}
	return toShard
}

// signal tells the writer goroutine it has something to do, starting one if none runs.
// Once the reader has stopped none is started: the reader ends the writes itself.
func (c *conn) signal() {
	c.mu.Lock()
	if c.writerOn {
		c.kick = true
		c.mu.Unlock()
		return
	}
	if c.writerGone || c.readerGone {
		c.mu.Unlock()
		return
	}
	c.writerOn, c.kick = true, true
	c.mu.Unlock()
	go c.writeLoop()
}

// stopWriter tells the writer goroutine that the reader has stopped and waits for it
// to end, if one runs.
func (c *conn) stopWriter() {
	c.mu.Lock()
	c.readerGone = true
	if !c.writerOn {
		c.mu.Unlock()
		return
	}
	c.kick = true
	exited := make(chan struct{})
	c.writerExit = exited
	c.mu.Unlock()
	<-exited
}

// writerEndedLocked marks the writer goroutine gone; c.mu is held, and it is the
// goroutine's last step, taken in the same hold of c.mu as the decision to end so
// that no signal in between is lost.
func (c *conn) writerEndedLocked() {
	c.writerOn, c.kick = false, false
	if c.writerExit != nil {
		close(c.writerExit)
		c.writerExit = nil
	}
}

// enqueue adds a frame, or drops the connection when it is too far behind. It never
// blocks: it runs in the hub's delivery path.
func (c *conn) enqueue(f *frame) {
	if c.put(f) {
		c.shard.add(c)
	}
}

// put queues f and reports whether c must now go on its shard's pending list (the
// caller puts it there); otherwise the writer goroutine has been told, or c is closing.
func (c *conn) put(f *frame) (toShard bool) {
	c.mu.Lock()
	if c.closeCode != 0 {
		c.mu.Unlock()
		return false
	}
	cfg := &c.hub.cfg
	if c.queuedBytes+f.size > cfg.MaxQueueBytes || len(c.queue) >= maxQueueFrames || c.behindLocked(f.at) {
		c.mu.Unlock()
		c.drop(websocket.ClosePolicyViolation, "too slow")
		return false
	}
	c.queue = append(c.queue, f)
	c.queuedBytes += f.size
	inWriter := c.inWriter
	toShard = !inWriter && !c.inShard
	if toShard {
		c.inShard = true
	}
	c.mu.Unlock()
	if inWriter {
		c.signal()
	}
	return toShard
}

// behindLocked reports whether the oldest frame not yet sent is more than MaxBehind
// older than now. c.mu is held.
func (c *conn) behindLocked(now time.Time) bool {
	since := c.sendingAt
	if since.IsZero() && len(c.queue) > 0 {
		since = c.queue[0].at
	}
	return !since.IsZero() && now.Sub(since) > c.hub.cfg.MaxBehind
}

// dropIfBehind drops c when it is more than MaxBehind behind: the hub's sweep finds
// the clients that fell behind when no new event comes to show it.
func (c *conn) dropIfBehind(now time.Time) {
	c.mu.Lock()
	behind := c.closeCode == 0 && c.behindLocked(now)
	c.mu.Unlock()
	if behind {
		c.drop(websocket.ClosePolicyViolation, "too slow")
	}
}

// oldestAt is when the oldest frame of batch arrived (zero for none, or pings only).
func oldestAt(batch []*frame) time.Time {
	for _, f := range batch {
		if !f.at.IsZero() {
			return f.at
		}
	}
	return time.Time{}
}

// unsentAt is when the first frame of batch that sent bytes did not finish arrived.
func unsentAt(batch []*frame, sent int) time.Time {
	for i, f := range batch {
		if sent < len(f.wire) {
			return oldestAt(batch[i:])
		}
		sent -= len(f.wire)
	}
	return time.Time{}
}

// hotBytes is how much of a conn put and flushFast touch per event (its first three
// cache lines); connSize is conn's size, a size class of whole cache lines.
const (
	hotBytes = 192
	connSize = 448
)

// prefetch starts loading the cache lines put and flushFast touch (c's locks, queue
// fields, hub and shard, socket: the first hotBytes), so that they arrive while the
// caller works on the connection before c instead of stalling c's turn.
func (c *conn) prefetch() {
	p := unsafe.Pointer(c)
	prefetch(p)
	prefetch(unsafe.Add(p, 64))
	prefetch(unsafe.Add(p, 128))
}

// flushFast is the shard's pass over c: send the whole queue with one non-blocking
// send. What the socket does not take goes to the writer goroutine, with bc.mu still
// held so that nothing (a pong from the reader, a ping) lands inside the frame.
func (c *conn) flushFast(scratch *[]byte) {
	batch, ok := c.flushBegin()
	if !ok {
		return
	}
	rest, err := c.bcMem.tryWrite(batch, scratch)
	c.flushEnd(batch, rest, err)
}

// flushBegin takes c's queue for the shard to send. When ok, bc.mu is held, and
// flushEnd must follow with the send's outcome (the shard may send several
// connections' batches, each under its bc.mu, before it ends them).
func (c *conn) flushBegin() (batch []*frame, ok bool) {
	bc := &c.bcMem // c.bc, without loading the pointer
	c.mu.Lock()
	c.inShard = false
	if c.inWriter || c.closeCode != 0 || (len(c.queue) == 0 && !c.pingDue) {
		c.mu.Unlock()
		return nil, false
	}
	// Someone else is writing (a pong, a ping, a blocked write): let the writer wait.
	// Taking bc.mu under c.mu keeps the batches in queue order.
	if !bc.mu.TryLock() {
		c.inWriter = true
		c.mu.Unlock()
		c.signal()
		return nil, false
	}
	batch = c.queue
	c.queue, c.spare = c.spare[:0], nil
	c.queuedBytes = 0
	if c.pingDue { // after the data: a ping is a whole frame, never inside one
		batch = append(batch, pingFrame)
		c.pingDue = false
	}
	c.shardBusy = true
	c.sendingAt = oldestAt(batch)
	c.mu.Unlock()
	return batch, true
}

// flushEnd ends the shard's send of batch (from flushBegin): rest is what the socket
// did not take (nil: all went out), err why the send failed. The rest goes to the
// writer goroutine with bc.mu; otherwise bc.mu is released.
func (c *conn) flushEnd(batch []*frame, rest []byte, err error) {
	bc := &c.bcMem
	var restAt time.Time
	if rest != nil {
		total := 0
		for _, f := range batch {
			total += len(f.wire)
		}
		restAt = unsentAt(batch, total-len(rest))
	}
	clear(batch)
	c.mu.Lock()
	c.shardBusy = false
	c.sendingAt = restAt // the handed-over rest is still under way
	if c.spare == nil {
		c.spare = batch[:0]
	}
	if err != nil || rest != nil {
		c.inWriter = true
		c.failed = err != nil
	}
	if rest != nil && !c.writerGone {
		c.handoff = rest // bc.mu goes with it
		c.hub.metrics.blocked.Inc()
	} else {
		bc.mu.Unlock()
	}
	// The writer may have been woken meanwhile and found the shard busy: wake it again.
	wakeWriter := c.inWriter || c.pingDue || c.readerGone || c.closeCode != 0
	c.mu.Unlock()
	if wakeWriter {
		c.signal()
	}
}

// send queues a frame for this client only (error, pong); it does not count as behind.
func (c *conn) send(typ string, data any) {
	body, err := encodeBody(c.hub.cfg.Now(), data)
	if err != nil {
		return
	}
	c.enqueue(newFrame(0, buildUnsequenced(typ, body), c.hub.cfg.Now()))
}

func (c *conn) sendError(code, msg string) {
	c.send(EventError, ErrorData{Code: code, Message: msg})
}

// closeAfterQueue closes the connection normally once what is queued has been sent.
func (c *conn) closeAfterQueue(code int, reason string) {
	c.mu.Lock()
	if c.closeCode == 0 {
		c.closeCode, c.closeReason = code, reason
	}
	c.mu.Unlock()
	c.signal()
}

// drop closes the connection at once, dropping what is queued, and interrupts a write
// in progress.
func (c *conn) drop(code int, reason string) {
	c.mu.Lock()
	if c.closeNow {
		c.mu.Unlock()
		return
	}
	c.closeCode, c.closeReason, c.closeNow = code, reason, true
	c.queue, c.queuedBytes = nil, 0
	c.mu.Unlock()
	c.hub.metrics.dropped.WithLabelValues(strconv.Itoa(code)).Inc()
	c.bc.interrupt() // a blocked write fails now
	c.signal()
}

// writeLoop sends what the shard cannot (see conn.inWriter), pings while it owns the
// writes, and the close. It returns when it has nothing left to do (signal starts it
// again) or when the connection's writes end.
func (c *conn) writeLoop() {
	for {
		c.mu.Lock()
		// Busy shard: it signals when done (its send may end in a handoff).
		if !c.kick || c.shardBusy {
			c.writerEndedLocked()
			c.mu.Unlock()
			return
		}
		c.kick = false
		if !c.writeStep() {
			c.endWrites()
			c.mu.Lock()
			c.writerEndedLocked()
			c.mu.Unlock()
			return
		}
	}
}

// writeStep does what the writer was kicked for; c.mu is held on entry and released.
// It reports false when the connection's writes are over.
func (c *conn) writeStep() bool {
	handoff, failed := c.handoff, c.failed
	c.handoff = nil
	code, reason, now := c.closeCode, c.closeReason, c.closeNow
	stopped, ping := c.readerGone, c.pingDue
	c.pingDue = false
	var batch []*frame
	// The writer takes bc.mu below only while it owns the writes, so that a shard
	// send cannot start meanwhile and hand bc.mu over to this very goroutine.
	if code != 0 || ping {
		c.inWriter = true // for a close, for good: the close follows the queue
	}
	if c.inWriter {
		batch = c.queue
		c.queue, c.spare = c.spare[:0], nil
		c.queuedBytes = 0
	}
	batchAt := oldestAt(batch)
	if handoff == nil {
		c.sendingAt = batchAt
	} // else sendingAt is the handoff's, older
	c.mu.Unlock()
	if handoff != nil { // first: the shard handed over bc.mu with it
		deadline := c.nextDeadline()
		if now {
			// Half a frame is out: a close may only follow the whole frame, so
			// finish it in the close's own second, or end without a close frame.
			deadline = time.Now().Add(closeWait)
		}
		if failed || stopped {
			c.bc.mu.Unlock()
		} else if err := c.bc.finishWrite(handoff, deadline); err != nil {
			return false
		}
		c.mu.Lock()
		c.sendingAt = batchAt
		c.mu.Unlock()
	}
	if failed || stopped {
		return false
	}
	if now {
		c.writeCloseDirect(code, reason)
		return false
	}
	if err := c.writeBatch(batch); err != nil {
		return false
	}
	// After the data, as the shard does: a connection's first frame is its snapshot,
	// also when its ping slot's tick comes while it joins.
	if ping {
		if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.hub.cfg.WriteTimeout)); err != nil {
			return false
		}
	}
	clear(batch)
	if code != 0 {
		c.writeCloseDirect(code, reason)
		c.awaitCloseReply()
		return false
	}
	c.backToShard(batch)
	return true
}

// endWrites stops all sending (the shard's too) and closes the socket, which ends
// the reader.
func (c *conn) endWrites() {
	c.mu.Lock()
	c.inWriter, c.writerGone = true, true
	handoff := c.handoff
	c.handoff = nil
	c.mu.Unlock()
	if handoff != nil {
		c.bc.mu.Unlock()
	}
	c.bc.Close()
}

// backToShard hands data writes back to the shard once the writer has caught up.
func (c *conn) backToShard(batch []*frame) {
	c.mu.Lock()
	c.sendingAt = time.Time{}
	if c.spare == nil {
		c.spare = batch[:0]
	}
	more := c.inWriter && (len(c.queue) > 0 || c.handoff != nil || c.closeCode != 0)
	// Without a file descriptor the shard cannot send (tryWrite fails): the writes
	// stay with this goroutine's successors, started by signal.
	if c.inWriter && !more && c.bc.fd >= 0 {
		c.inWriter = false
	}
	c.mu.Unlock()
	if more {
		c.signal()
	}
}

func (c *conn) writeBatch(batch []*frame) error {
	if len(batch) == 0 {
		return nil
	}
	return c.bc.writeFrames(batch, c.nextDeadline())
}

// nextDeadline is the write deadline for the writer's next write. Moving the deadline
// costs a timer update: it moves when a second has passed.
func (c *conn) nextDeadline() time.Time {
	if now := time.Now(); c.deadline.Sub(now) < c.hub.cfg.WriteTimeout-time.Second {
		c.deadline = now.Add(c.hub.cfg.WriteTimeout)
	}
	return c.deadline
}

// writeCloseDirect sends a close frame with a short deadline.
func (c *conn) writeCloseDirect(code int, reason string) {
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(closeWait))
}

// awaitCloseReply gives the client a moment to answer the close before the TCP close.
func (c *conn) awaitCloseReply() {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
	}
}
