package live

import (
	"context"
	"time"

	"github.com/livecart/livecart/cart"
)

// Event types the live channel adds to the commerce ones in package cart.
const (
	EventSnapshot   = "snapshot"    // Snapshot
	EventChat       = "chat"        // ChatData
	EventChatDelete = "chat_delete" // ChatDeleteData
	EventMute       = "mute"        // MuteData
	EventViewers    = "viewers"     // ViewersData
	EventStream     = "stream"      // {"stream": {..., "status"}}; "ended" closes the stream's connections
	EventMedia      = "media"       // MediaState
	EventAnnounce   = "announce"    // AnnounceData
	EventError      = "error"       // ErrorData, to one client, no seq
	EventPong       = "pong"        // no fields, no seq
	// EventHeartbeat (no fields, no seq) goes, on a stream silent for
	// Config.HeartbeatAfter, to the connections that asked for it (?heartbeat=1): a
	// page can tell a live connection from a dead one without pinging (a ping costs the
	// server ~30 times a heartbeat's share of a fan-out; docs/BENCHMARKS.md).
	EventHeartbeat = "heartbeat"
)

// ChatData is the payload of a chat event.
type ChatData struct {
	ID     string `json:"id"`
	UserID string `json:"user_id"`
	Name   string `json:"name"`
	Text   string `json:"text"`
}

// ChatDeleteData is the payload of a chat_delete event.
type ChatDeleteData struct {
	ID string `json:"id"`
}

// MuteData is the payload of a mute event.
type MuteData struct {
	UserID string    `json:"user_id"`
	Until  time.Time `json:"until"`
}

// ViewersData is the payload of a viewers event.
type ViewersData struct {
	Count int `json:"count"`
}

// AnnounceData is the payload of an announce event (a text from the stream's staff;
// the load generator uses it to measure delivery).
type AnnounceData struct {
	Text string `json:"text"`
}

// ErrorData is the payload of an error event.
type ErrorData struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Emit publishes a domain event to the stream's viewers on every node. Stock events
// (per sale) and stock-only product changes (per product) are coalesced to at most one
// per CoalesceInterval, newest value first, the last value always sent. Emit waits for
// the bus, never for viewers; on a bus that is not in process (Redis) it waits at most
// until ctx ends: a slow or frozen Redis must not hold up the request that emits (its
// change is in), nor the stream's next requests. The event is still published, in
// order with the stream's others, once the bus answers (each call within its own
// timeout). The events waiting for the bus are bounded per stream
// (Config.EmitQueueMax, EmitQueueBytes); see TryEmit for what a full queue does.
func (h *Hub) Emit(ctx context.Context, ev cart.Event) {
	if err := h.TryEmit(ctx, ev); err != nil {
		h.cfg.Logger.Warn("live: event refused", "stream", ev.StreamID, "type", ev.Type, "err", err)
	}
}

// TryEmit is Emit, telling when the event was refused: ErrBacklog when the stream's
// events wait for the bus, its queue is full and ev is not the stream's state (an
// announce, chat_delete or mute: the caller answers its request unavailable). A state
// event is never refused: it supersedes a queued one of the same key, or gives way to
// the node-death comparison (see emitter.overflowLocked).
func (h *Hub) TryEmit(ctx context.Context, ev cart.Event) error {
	e := h.emitter(ev.StreamID)
	if e == nil {
		return nil
	}
	defer h.release(e)
	if _, inProcess := h.cfg.Bus.(*MemoryBus); inProcess {
		e.emit(ctx, ev)
		return nil
	}
	done, err := e.enqueue(ctx, ev)
	if done == nil {
		return err
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// Reservation is a place taken in a stream's queue for the bus for one event that is
// not the stream's state (an announce, chat_delete or mute), before the action that
// makes it: the action is done only once the place is had, so that an action refused
// for a full queue leaves nothing behind (no audit entry, no mute) and its retry is
// done once. Emit sends the event (never refused); Cancel gives the place back when
// the action failed. One of the two must be called, once; a Reservation is not for
// concurrent use.
type Reservation struct {
	h      *Hub
	e      *emitter // held (Hub.emitter) until Emit or Cancel; nil: nothing (hub closed, or done)
	ev     cart.Event
	size   int
	queued bool // a place in the queue was taken (a bus not in process)
}

// Reserve takes a place for ev (not the stream's state) in its stream's queue for the
// bus: ErrBacklog (a cart.ErrUnavailable) when the stream's events wait for the bus
// and its queue is full, as TryEmit refuses ev then. The place counts in the queue's
// bounds (Config.EmitQueueMax, EmitQueueBytes) until Emit or Cancel.
func (h *Hub) Reserve(ev cart.Event) (*Reservation, error) {
	e := h.emitter(ev.StreamID)
	if e == nil {
		return &Reservation{h: h}, nil // closed: Emit does nothing, as Emit would
	}
	r := &Reservation{h: h, e: e, ev: ev}
	if _, inProcess := h.cfg.Bus.(*MemoryBus); inProcess {
		return r, nil
	}
	r.size, r.queued = eventSize(ev), true
	if err := e.reserve(r.size); err != nil {
		h.release(e)
		return nil, err
	}
	return r, nil
}

// Emit publishes the reserved event as Emit does (in order with the stream's others,
// waiting for the bus until ctx ends), in its place: never refused.
func (r *Reservation) Emit(ctx context.Context) {
	e := r.e
	if e == nil {
		return
	}
	r.e = nil
	defer r.h.release(e)
	if !r.queued {
		e.emit(ctx, r.ev)
		return
	}
	done := e.enqueueReserved(ctx, r.ev, r.size)
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Cancel gives the place back without publishing; after Emit it does nothing.
func (r *Reservation) Cancel() {
	e := r.e
	if e == nil {
		return
	}
	r.e = nil
	if r.queued {
		e.unreserve(r.size)
	}
	r.h.release(e)
}

// seenPublisher is a Bus that records the stock values an event carries as delivered
// (the RedisBus).
type seenPublisher interface {
	PublishSeen(ctx context.Context, sid, typ string, body []byte, seen []StockValue, onlyNewer bool) (Record, error)
	PublishRescued(ctx context.Context, sid, typ string, body []byte, seen []StockValue, stamp int64) (Record, error)
}

// publish encodes and publishes one event now, trying for 5 s at most (an event
// whose sender waits, or that a later one carries anew: a chat message, a viewer
// count, a rescue). An error is logged and returned.
func (h *Hub) publish(ctx context.Context, sid, typ string, data any) (Record, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), PublishTryTimeout)
	defer cancel()
	return h.publishUntil(ctx, sid, typ, data)
}

// publishEmitted publishes an emitted event (Emit): one a request was answered for,
// so it is tried until it is out (the bus sends it again with its id, each try
// bounded, until Redis answers) while the hub runs; the caller holds its stream's
// emitter, so the stream's later events wait behind it, in order, in the emit queue.
// Once Close has given up on the events still waiting (backgroundCtx), each is tried
// for 5 s at most: what does not go out then is lost with the node (logged), the
// stream's state rescued by the other nodes' comparison.
func (h *Hub) publishEmitted(sid, typ string, data any) {
	ctx := h.backgroundCtx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), PublishTryTimeout)
		defer cancel()
	}
	h.publishUntil(ctx, sid, typ, data)
}

// publishUntil encodes and publishes one event, the bus trying until ctx ends.
func (h *Hub) publishUntil(ctx context.Context, sid, typ string, data any) (Record, error) {
	body, err := encodeBody(h.cfg.Now(), data)
	if err != nil {
		h.cfg.Logger.Error("live: encode event", "stream", sid, "type", typ, "err", err)
		return Record{}, err
	}
	var rec Record
	if sp, ok := h.cfg.Bus.(seenPublisher); ok && h.stockGate != nil {
		// Stock values are recorded as delivered with the event: StaleStock compares them
		// with the store.
		rec, err = sp.PublishSeen(ctx, sid, typ, body, stockValues(data), false)
	} else {
		rec, err = h.cfg.Bus.Publish(ctx, sid, typ, body)
	}
	if err != nil {
		h.cfg.Logger.Error("live: publish event", "stream", sid, "type", typ, "err", err)
	}
	return rec, err
}

// emitter returns the stream's emitter (nil once the hub is closed), held for the
// caller until release: forgetIdle never drops an emitter someone is about to use, so
// a stream never has two emitters publishing at once.
func (h *Hub) emitter(sid string) *emitter {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	e := h.emitters[sid]
	if e == nil {
		e = &emitter{hub: h, sid: sid, pending: map[string]*pendingEvent{}, lastSent: map[string]time.Time{}, products: map[string]cart.Product{}, gated: map[string]*gatedStock{}, endedSales: map[string]bool{}}
		h.emitters[sid] = e
	}
	e.users++
	return e
}

// release ends a hold taken by emitter.
func (h *Hub) release(e *emitter) {
	h.mu.Lock()
	e.users--
	h.mu.Unlock()
}
