package live

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/livecart/livecart/cart"
)

// cutProxy forwards loopback TCP connections to a Redis; cut closes the ones open and
// refuses new ones (Redis unreachable: a restart, a network cut) until restore.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex // guards conns and down
	conns map[net.Conn]bool
	down  bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = true, true
		p.mu.Unlock()
		go func() { io.Copy(s, c); s.Close(); c.Close() }()
		go func() { io.Copy(c, s); s.Close(); c.Close() }()
	}
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// moderationEvents are the events of a moderator's actions that nothing re-derives
// (a mute, a chat deletion, an announce) and a media mute, numbered by n.
func moderationEvents(sid string, n int) []cart.Event {
	return []cart.Event{
		{StreamID: sid, Type: EventMute, Data: MuteData{UserID: fmt.Sprint("user-", n), Until: time.Now().Add(time.Minute).UTC()}},
		{StreamID: sid, Type: EventChatDelete, Data: ChatDeleteData{ID: uuid.NewString()}},
		{StreamID: sid, Type: EventAnnounce, Data: AnnounceData{Text: fmt.Sprint("announce ", n)}},
		{StreamID: sid, Type: EventMedia, Data: MediaState{AudioMuted: n%2 == 0, VideoMuted: n%2 == 1}},
	}
}

// emitAsModerator hands ev to h as the web layer does for a request bounded by
// wait: a place reserved before the action for a mute, a chat deletion or an announce
// (Reserve), the event emitted, the request answered once ev is out or wait has
// passed. It fails the test when the place is refused.
func emitAsModerator(t *testing.T, h *Hub, ev cart.Event, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if isState(ev) {
		h.Emit(ctx, ev)
		return
	}
	r, err := h.Reserve(ev)
	if err != nil {
		t.Fatalf("reserve %s: %v", ev.Type, err)
	}
	r.Emit(ctx)
}

// announceDone announces "done" through h (expectInOrder's last event) once the
// stream's queue has room for it.
func announceDone(t *testing.T, h *Hub, sid string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		err := h.TryEmit(context.Background(), cart.Event{StreamID: sid, Type: EventAnnounce, Data: AnnounceData{Text: "done"}})
		if err == nil {
			return
		}
		if !errors.Is(err, ErrBacklog) || time.Now().After(deadline) {
			t.Fatalf("announce: %v", err)
		}
	}
}

// expectInOrder reads c's frames until the announce "done" and checks that the types
// and announce texts of the others are want's, with consecutive seqs from first.
func expectInOrder(t *testing.T, c *client, first int64, want []cart.Event, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	var got []msg
	for {
		select {
		case m := <-c.msgs:
			if m.Type == EventViewers {
				continue
			}
			if m.Type == EventAnnounce && m.Text == "done" {
				if len(got) != len(want) {
					t.Fatalf("got %d events before the last, want %d: %v", len(got), len(want), describe(got))
				}
				for i, ev := range want {
					wantText := ""
					if a, ok := ev.Data.(AnnounceData); ok {
						wantText = a.Text
					}
					if got[i].Type != ev.Type || got[i].Text != wantText || got[i].Seq != first+int64(i) {
						t.Fatalf("event %d: got %s %q seq %d, want %s %q seq %d (all: %v)", i, got[i].Type, got[i].Text, got[i].Seq, ev.Type, wantText, first+int64(i), describe(got))
					}
				}
				if m.Seq != first+int64(len(want)) {
					t.Fatalf("last event seq %d, want %d", m.Seq, first+int64(len(want)))
				}
				return
			}
			got = append(got, m)
		case <-deadline:
			t.Fatalf("after %v: got %v, want %d events then the last", within, describe(got), len(want))
		}
	}
}

func describe(ms []msg) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = fmt.Sprintf("%d:%s%q", m.Seq, m.Type, m.Text)
	}
	return out
}

// TestModerationEventsOutAfterRedisCut: node A's Redis connections are cut (Redis
// unreachable) for 6 s while moderators mute, delete a message, announce and mute the
// media through A; each request is answered after its bound. Once Redis answers again
// the viewer (on node B, whose connection stayed) gets every one of them, in the order
// they were made, with consecutive seqs, each once. (Before: each publication gave up
// after 5 tries within a second, logged, and the events were lost.)
func TestModerationEventsOutAfterRedisCut(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	r := startHangableRedis(t)
	prefix := "cut-" + uuid.NewString()[:8]
	p := newCutProxy(t, r.addr())
	rdbA, err := NewRedisClient("redis://" + p.addr() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdbA.Close() })
	rdbB := redis.NewClient(&redis.Options{Addr: r.addr()})
	t.Cleanup(func() { rdbB.Close() })
	busA, busB := NewRedisBus(rdbA, prefix, nil, nil), NewRedisBus(rdbB, prefix, nil, nil)
	t.Cleanup(func() { busA.Close(); busB.Close() })
	a := newTestServer(t, Config{Bus: busA, Presence: NewRedisPresence(rdbA, prefix, "node-a", nil), ViewersInterval: time.Hour})
	b := newTestServer(t, Config{Bus: busB, Presence: NewRedisPresence(rdbB, prefix, "node-b", nil), ViewersInterval: time.Hour})
	sid := uuid.NewString()
	c := b.dial(t, sid, "")
	c.nextOf(t, "snapshot")
	announce(a.hub, sid, "before")
	if m := c.nextOf(t, EventAnnounce); m.Seq != 1 {
		t.Fatalf("first announce seq %d, want 1", m.Seq)
	}

	p.cut()
	var want []cart.Event
	for n := range 2 {
		for _, ev := range moderationEvents(sid, n) {
			emitAsModerator(t, a.hub, ev, 200*time.Millisecond)
			want = append(want, ev)
		}
		time.Sleep(3 * time.Second)
	}
	p.restore()
	announceDone(t, a.hub, sid)
	expectInOrder(t, c, 2, want, 15*time.Second)
}

// TestModerationEventsOutAfterRedisFreeze: the one Redis of two nodes freezes for 7 s
// (its connections open, nothing answered: a publication sent may run when it thaws)
// while moderators act through node A, spread over the freeze. After the thaw the
// viewer on node B gets every event once, in order, with consecutive seqs: a
// publication whose try timed out is sent again with its id until Redis answers, and
// the script runs it once.
func TestModerationEventsOutAfterRedisFreeze(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	r := startHangableRedis(t)
	prefix := "freeze-" + uuid.NewString()[:8]
	rdbA, err := NewRedisClient("redis://" + r.addr() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdbA.Close() })
	rdbB, err := NewRedisClient("redis://" + r.addr() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdbB.Close() })
	busA, busB := NewRedisBus(rdbA, prefix, nil, nil), NewRedisBus(rdbB, prefix, nil, nil)
	t.Cleanup(func() { busA.Close(); busB.Close() })
	a := newTestServer(t, Config{Bus: busA, Presence: NewRedisPresence(rdbA, prefix, "node-a", nil), ViewersInterval: time.Hour})
	b := newTestServer(t, Config{Bus: busB, Presence: NewRedisPresence(rdbB, prefix, "node-b", nil), ViewersInterval: time.Hour})
	sid := uuid.NewString()
	c := b.dial(t, sid, "")
	c.nextOf(t, "snapshot")
	announce(a.hub, sid, "before")
	if m := c.nextOf(t, EventAnnounce); m.Seq != 1 {
		t.Fatalf("first announce seq %d, want 1", m.Seq)
	}

	thaw := r.freezeTillThaw(t)
	frozen := time.Now()
	var want []cart.Event
	for n := range 3 {
		for _, ev := range moderationEvents(sid, n) {
			emitAsModerator(t, a.hub, ev, 100*time.Millisecond)
			want = append(want, ev)
		}
		time.Sleep(2500 * time.Millisecond)
	}
	time.Sleep(time.Until(frozen.Add(7 * time.Second)))
	thaw()
	announceDone(t, a.hub, sid)
	expectInOrder(t, c, 2, want, 20*time.Second)
}

// overflowCount is the hub's count of events that found their stream's queue full,
// by result.
func overflowCount(t *testing.T, h *Hub, result string) float64 {
	t.Helper()
	var m dto.Metric
	if err := h.metrics.emitOverflow.WithLabelValues(result).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestMediaMuteOverFullQueueGoesOut: Redis freezes with the stream's queue for it full
// of announces when a moderator mutes the video (done and answered: the store holds
// it). The media event is queued over the bound (a second one supersedes it) and
// reaches the viewer after the thaw, after the announces. (Before: it was refused as
// an announce is, and Emit only logged it: the viewers never learned of the mute.)
func TestMediaMuteOverFullQueueGoesOut(t *testing.T) {
	r, rdb, bus := startHangableBus(t, "mediaq-"+uuid.NewString()[:8])
	const maxEvents = 2
	ts := newTestServer(t, Config{Bus: bus, Presence: NewRedisPresence(rdb, "mediaq", "node-a", nil), EmitQueueMax: maxEvents, ViewersInterval: time.Hour})
	sid := uuid.NewString()
	c := ts.watch(t, sid)
	thaw := r.freezeTillThaw(t)
	var want []cart.Event
	for i := range maxEvents + 1 {
		ev := cart.Event{StreamID: sid, Type: EventAnnounce, Data: AnnounceData{Text: fmt.Sprint("queued ", i)}}
		emitAsModerator(t, ts.hub, ev, 5*time.Millisecond)
		want = append(want, ev)
		for deadline := time.Now().Add(2 * time.Second); i == 0; time.Sleep(time.Millisecond) {
			if n, _ := ts.hub.queued(sid); n == 0 {
				break // the first left the queue: it is being published
			}
			if time.Now().After(deadline) {
				t.Fatal("the first event never left the queue")
			}
		}
	}
	if err := ts.hub.TryEmit(context.Background(), cart.Event{StreamID: sid, Type: EventAnnounce, Data: AnnounceData{Text: "over"}}); !errors.Is(err, ErrBacklog) {
		t.Fatalf("announce over a full queue: %v, want ErrBacklog", err)
	}
	for _, audio := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		err := ts.hub.TryEmit(ctx, cart.Event{StreamID: sid, Type: EventMedia, Data: MediaState{AudioMuted: audio, VideoMuted: true}})
		cancel()
		if err != nil {
			t.Fatalf("media mute over a full queue: %v, want it queued", err)
		}
	}
	if n, _ := ts.hub.queued(sid); n > maxEvents+1 {
		t.Fatalf("the queue holds %d events, want at most %d (one media event over the bound)", n, maxEvents+1)
	}
	thaw()
	announceDone(t, ts.hub, sid)
	want = append(want, cart.Event{Type: EventMedia})
	expectInOrder(t, c, 1, want, 15*time.Second)
}

// TestStateEventBesideReservedPlacesGoesOutAtOnce: every place in a stream's queue is
// reserved by moderation actions under way, Redis answering. A product created then
// goes out at once, not left to the node-death comparison (about two seconds late):
// the places reserved count against events that are not the stream's state only.
func TestStateEventBesideReservedPlacesGoesOutAtOnce(t *testing.T) {
	prefix := "resv-" + uuid.NewString()[:8]
	_, rdb, bus, store := startHangableStore(t, prefix)
	ctx := context.Background()
	const maxEvents = 2
	ts := newTestServer(t, Config{Bus: bus, Presence: NewRedisPresence(rdb, prefix, "node-a", nil), Stock: store,
		EmitQueueMax: maxEvents, ViewersInterval: time.Hour})
	sid, _ := newStreamWithProduct(t, ctx, store)
	c := ts.watch(t, sid)
	waitComparison(t, ts.hub) // the stream's first comparison: its baseline

	var places []*Reservation
	for range maxEvents {
		r, err := ts.hub.Reserve(cart.Event{StreamID: sid, Type: EventMute, Data: MuteData{UserID: "u", Until: time.Now()}})
		if err != nil {
			t.Fatalf("reserve in an empty queue: %v", err)
		}
		places = append(places, r)
	}
	defer func() {
		for _, r := range places {
			r.Cancel()
		}
	}()
	if _, err := ts.hub.Reserve(cart.Event{StreamID: sid, Type: EventMute, Data: MuteData{UserID: "v", Until: time.Now()}}); !errors.Is(err, ErrBacklog) {
		t.Fatalf("reserve over the bound: %v, want ErrBacklog", err)
	}
	rescued := overflowCount(t, ts.hub, "rescued")
	p, err := store.CreateProduct(ctx, cart.Product{ID: uuid.NewString(), StreamID: sid, SKU: "N", Title: "new one",
		PriceCents: 200, Currency: "EUR", Stock: 5}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Within a second: a rescue comes StockRescueAfter (1 s) after the change at the
	// soonest, and is counted below; 0.5 s left a loaded -race run little room.
	start := time.Now()
	ts.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventProduct, Data: cart.ProductData{Product: p}})
	m := c.nextOf(t, "product")
	if took := time.Since(start); m.Product.ID != p.ID || took > time.Second {
		t.Fatalf("product event %s after %v, want %s within 1 s", m.Product.ID, took, p.ID)
	}
	if got := overflowCount(t, ts.hub, "rescued"); got != rescued {
		t.Fatalf("%v events left to the comparison, want none", got-rescued)
	}
}

// TestMediaEventsWithRoomAllGoOut: with room in the stream's queue, a media event does
// not take the place of one still queued (that is only once the queue is full,
// TestMediaMuteOverFullQueueGoesOut): two mutes made while Redis is frozen both reach
// the viewer after the thaw, in order (docs/API.md's "what not lost means").
func TestMediaEventsWithRoomAllGoOut(t *testing.T) {
	r, rdb, bus := startHangableBus(t, "mediaroom-"+uuid.NewString()[:8])
	ts := newTestServer(t, Config{Bus: bus, Presence: NewRedisPresence(rdb, "mediaroom", "node-a", nil), EmitQueueMax: 16, ViewersInterval: time.Hour})
	sid := uuid.NewString()
	c := ts.watch(t, sid)
	thaw := r.freezeTillThaw(t)
	var want []cart.Event
	for _, audio := range []bool{true, false} {
		ev := cart.Event{StreamID: sid, Type: EventMedia, Data: MediaState{AudioMuted: audio, VideoMuted: true}}
		emitAsModerator(t, ts.hub, ev, 5*time.Millisecond)
		want = append(want, ev)
	}
	thaw()
	announceDone(t, ts.hub, sid)
	expectInOrder(t, c, 1, want, 15*time.Second)
}
