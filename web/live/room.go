package live

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/gorilla/websocket"
	"sync"
	"sync/atomic"
)

// frame is one encoded event, shared by every connection that sends it.
type frame struct {
	seq  int64  // 0 for frames sent to one client
	wire []byte // the whole websocket frame
	size int
	at   time.Time // when this node got it
}

func newFrame(seq int64, data []byte, at time.Time) *frame {
	return &frame{seq: seq, wire: wireFrame(data), size: len(data), at: at}
}

// pingFrame is an empty websocket ping (FIN, opcode 9, no payload), sent by the shards.
var pingFrame = &frame{wire: []byte{0x89, 0x00}}

// room is one stream's connections on this node, fed by the bus subscription.
type room struct {
	hub   *Hub
	sid   string
	ready chan struct{} // closed once subscribed (or failed: err set)
	err   error
	refs  int    // connections holding the room; guarded by hub.mu
	stop  func() // cancels the bus subscription
	// staleFailing: the last stale-stock comparison of the stream failed (logged as a
	// warning once a streak); only the sweep goroutine uses it.
	staleFailing bool
	// settledSales are the stream's ended sales whose final remaining and status the
	// comparison found delivered (StaleStock's settled): it reads them no more. Used by
	// the sweep's goroutine only.
	settledSales map[string]bool

	// Writes of the room's count to the shared Presence go one at a time, so that an
	// older count never lands after a newer one (two joins or leaves racing would
	// otherwise leave the wrong count in Redis until the next refresh, or, once the room
	// is gone, until it expires), and are combined: presGen rises after every change of
	// conns; a write covers every change counted in presGen when it read the count, and
	// one waiting whose change is covered returns without writing (setPresence).
	presGen  atomic.Uint64
	presMu   sync.Mutex // held across a write of the count
	presDone uint64     // presGen as of the count last written (or tried); guarded by presMu

	mu sync.Mutex // guards below
	// conns are the room's connections in no order (each knows its index: roomIdx),
	// a slice so that deliver can prefetch the next one while it queues on this one.
	conns []*conn
	out   fanOut // the connections of the event being delivered, by writer shard
	last  int64  // seq of the last event delivered here; -1 before the first
	// lastTs is the ts of the event at last (a slice of its frame; nil: not known
	// here, as after a subscription or a restart: read from the bus when needed).
	lastTs []byte
	// sentAt is when the room last sent its connections an event or a heartbeat.
	sentAt time.Time
	ended  bool // a stream event said "ended"
	// nextPingSlot is the ping slot of the next connection to join: the room's
	// connections take the slots in turn, so each tick pings its share.
	nextPingSlot int
	// After the stream's event log restarted (Record.Reset, restart), the events
	// delivered wait in pending while resyncing, until the snapshot is read;
	// resyncGen counts the restarts (a later one supersedes a read under way).
	resyncing bool
	resyncGen uint64
	pending   []*frame
}

// acquireRoom returns sid's room, subscribing to the bus when it is new.
func (h *Hub) acquireRoom(ctx context.Context, sid string) (*room, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	r := h.rooms[sid]
	if r != nil {
		r.refs++
		h.mu.Unlock()
		<-r.ready
		if r.err != nil {
			h.releaseRoom(r)
			return nil, r.err
		}
		return r, nil
	}
	r = &room{hub: h, sid: sid, ready: make(chan struct{}), refs: 1, last: -1}
	h.rooms[sid] = r
	h.mu.Unlock()

	last, stop, err := h.cfg.Bus.Subscribe(ctx, sid, r.deliver)
	if err != nil {
		r.err = err
		h.mu.Lock()
		if h.rooms[sid] == r {
			delete(h.rooms, sid)
		}
		h.mu.Unlock()
		close(r.ready)
		return nil, err
	}
	r.stop = stop
	r.mu.Lock()
	if r.last < 0 { // the first delivered record is last+1, so a set value is newer
		r.last = last
	}
	r.mu.Unlock()
	close(r.ready)
	return r, nil
}

// releaseRoom drops a reference; the last one unsubscribes.
func (h *Hub) releaseRoom(r *room) {
	h.mu.Lock()
	r.refs--
	drop := r.refs == 0
	if drop && h.rooms[r.sid] == r {
		delete(h.rooms, r.sid)
	}
	h.mu.Unlock()
	if drop && r.stop != nil {
		r.stop()
	}
}

// deliver receives the bus's records in seq order and queues them on every connection.
func (r *room) deliver(rec Record) {
	now := r.hub.cfg.Now()
	if rec.Lost {
		r.mu.Lock()
		r.last, r.lastTs = rec.Seq-1, nil
		r.mu.Unlock()
		r.closeAll(websocket.CloseTryAgainLater, "events lost; reconnect", true)
		return
	}
	if rec.Reset {
		r.restart(rec.Seq)
		return
	}
	f := newFrame(rec.Seq, rec.Frame, now)
	ended := isStreamEnded(rec.Frame)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hub.metrics.events.Inc()
	ts := frameTs(rec.Frame)
	if r.resyncing {
		r.last, r.lastTs = rec.Seq, ts
		r.ended = r.ended || ended
		r.pending = append(r.pending, f)
		return
	}
	r.hub.metrics.deliveries.Add(float64(len(r.conns)))
	r.last, r.lastTs = rec.Seq, ts
	r.sentAt = now
	if ended {
		r.ended = true
	}
	cs := r.conns
	for i, c := range cs {
		if i+1 < len(cs) {
			cs[i+1].prefetch()
		}
		if c.put(f) {
			r.out.add(c)
		}
		if ended {
			c.closeAfterQueue(websocket.CloseNormalClosure, "stream ended")
		}
	}
	r.out.flush()
}

// restart starts the room's connections again from a snapshot at seq: the stream's
// event log restarted (Record.Reset: Redis lost its data, and the seq went back), so
// what they have does not lead to the events that follow. Closing them instead would
// not do: a client resuming with its since from the old log, once the new log's seq has
// passed it, would be served the new events after it and miss those before. The events
// delivered meanwhile wait until the snapshot is read, then follow it.
func (r *room) restart(seq int64) {
	r.hub.metrics.logRestarts.Inc()
	r.mu.Lock()
	r.last, r.lastTs = seq, nil
	r.resyncGen++
	g := r.resyncGen
	r.resyncing, r.pending = true, nil
	r.mu.Unlock()
	if !r.hub.goBackground(func() { r.resync(g, seq) }) {
		r.closeAll(websocket.CloseGoingAway, "server shutting down", true)
	}
}

// resync reads the snapshot at seq for restart g and queues it on every connection,
// then the events delivered since; if the read fails, the connections are closed
// with 1013 (as a join that cannot read it).
func (r *room) resync(g uint64, seq int64) {
	h := r.hub
	ctx, cancel := context.WithTimeout(h.backgroundCtx, h.cfg.JoinTimeout)
	f, err := h.snapshotFrame(ctx, r.snapshots(), r.sid, seq, r.seqTs(ctx, seq, nil))
	cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resyncGen != g {
		return // a later restart reads its own
	}
	frames := append([]*frame{f}, r.pending...)
	r.resyncing, r.pending = false, nil
	if err != nil {
		h.cfg.Logger.Warn("live: snapshot after the event log restarted", "stream", r.sid, "err", err)
		for _, c := range r.conns {
			c.drop(websocket.CloseTryAgainLater, "unavailable")
		}
		return
	}
	h.metrics.deliveries.Add(float64(len(r.conns) * len(frames)))
	for _, c := range r.conns {
		for _, fr := range frames {
			if c.put(fr) {
				r.out.add(c)
			}
		}
		if r.ended {
			c.closeAfterQueue(websocket.CloseNormalClosure, "stream ended")
		}
	}
	r.out.flush()
}

// isStreamEnded reports whether a frame is a stream event with status ended.
func isStreamEnded(frame []byte) bool {
	if !bytes.HasPrefix(frame, []byte(`{"type":"stream"`)) {
		return false
	}
	var v struct {
		Stream struct {
			Status string `json:"status"`
		} `json:"stream"`
	}
	return json.Unmarshal(frame, &v) == nil && v.Stream.Status == "ended"
}

// snapshots returns the SnapshotSource of one of the room's connections (the hub's
// Config.Snapshots when it has none).
func (r *room) snapshots() SnapshotSource {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		if c.snaps != nil {
			return c.snaps
		}
	}
	return r.hub.cfg.Snapshots
}

// seqTs is the ts of the stream's event at seq (known: the room's, nil when it was
// not known here), read from the bus's history when not known, and kept by the room if
// it still is at seq. nil at seq 0, or when the history no longer holds it (a new
// process's first seq on the embedded node, an ended stream's expired log): a
// snapshot then carries none.
func (r *room) seqTs(ctx context.Context, seq int64, known []byte) []byte {
	if known != nil || seq <= 0 {
		return known
	}
	recs, ok, err := r.hub.cfg.Bus.Since(ctx, r.sid, seq-1, seq)
	if err != nil || !ok || len(recs) != 1 {
		return nil
	}
	ts := frameTs(recs[0].Frame)
	r.mu.Lock()
	if r.last == seq && r.lastTs == nil && !r.resyncing {
		r.lastTs = ts
	}
	r.mu.Unlock()
	return ts
}

// add registers c and returns the seq of the last event already delivered here (and
// its ts, nil when not known here): c gets every later one.
func (r *room) add(c *conn) (last int64, lastTs []byte, ended bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !c.inRoom {
		c.inRoom, c.roomIdx = true, len(r.conns)
		c.pingSlot = r.nextPingSlot
		r.nextPingSlot++
		r.conns = append(r.conns, c)
	}
	return r.last, r.lastTs, r.ended
}

func (r *room) remove(c *conn) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.inRoom {
		last := len(r.conns) - 1
		moved := r.conns[last]
		r.conns[c.roomIdx], moved.roomIdx = moved, c.roomIdx
		r.conns[last] = nil
		r.conns = r.conns[:last]
		c.inRoom = false
	}
	return len(r.conns)
}

func (r *room) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// closeAll closes every connection of the room (at once, or after their queues).
func (r *room) closeAll(code int, reason string, now bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		if now {
			c.drop(code, reason)
		} else {
			c.closeAfterQueue(code, reason)
		}
	}
}

// pingShare has the connections of ping slot slot (of slots) pinged (one hub ticker,
// not one per conn): the shards send the pings, one wake-up per shard, like an event.
func (r *room) pingShare(slot, slots int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		if c.pingSlot%slots == slot && c.requestPing() {
			r.out.add(c)
		}
	}
	r.out.flush()
}

// heartbeat sends a heartbeat event to the connections that asked for one when the room
// has sent nothing for after (HeartbeatAfter, less the tick's rounding: tickLoop): one
// fan-out, like an event (the shards send it, one wake-up each), where the pages would
// otherwise each ping. beat is the tick's frame, built by the first room that needs it;
// heartbeat returns it.
func (r *room) heartbeat(now time.Time, after time.Duration, beat *frame) *frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.sentAt) < after || r.resyncing || r.ended {
		return beat
	}
	r.sentAt = now
	for _, c := range r.conns {
		if !c.beats {
			continue
		}
		if beat == nil {
			body, _ := encodeBody(now, nil)
			beat = newFrame(0, buildUnsequenced(EventHeartbeat, body), now)
		}
		if c.put(beat) {
			r.out.add(c)
		}
	}
	r.out.flush()
	return beat
}

// dropBehind drops the connections more than MaxBehind behind (see conn.dropIfBehind).
func (r *room) dropBehind(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.dropIfBehind(now)
	}
}
