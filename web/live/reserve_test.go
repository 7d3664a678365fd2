package live

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/cart"
)

// TestStreamChangeOverReservedPlacesGoesOut: a stream's queue for the bus is empty
// and every place in it reserved (EmitQueueMax mutes whose actions are under way);
// the stream goes idle (queued: the places reserved count against moderation events
// only; it was queued over the bound). The reservations are then cancelled (their
// mutes failed): the change still reaches the viewer, though no event of the stream
// follows it. (Before 535eab3: it was queued with no drain running and stayed there
// until the stream's next event.)
func TestStreamChangeOverReservedPlacesGoesOut(t *testing.T) {
	rdb, prefix := testRedis(t, "livetest-reserve")
	cleanupPrefix(t, rdb, prefix)
	bus := NewRedisBus(rdb, prefix, nil, nil)
	t.Cleanup(func() { bus.Close() })
	const maxEvents = 2
	ts := newTestServer(t, Config{Bus: bus, EmitQueueMax: maxEvents})
	sid := uuid.NewString()
	c := ts.dial(t, sid, "")
	c.nextOf(t, "snapshot")

	var places []*Reservation
	for range maxEvents {
		r, err := ts.hub.Reserve(cart.Event{StreamID: sid, Type: EventMute, Data: MuteData{UserID: "u", Until: time.Now()}})
		if err != nil {
			t.Fatalf("reserve in an empty queue: %v", err)
		}
		places = append(places, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	ts.hub.Emit(ctx, cart.Event{StreamID: sid, Type: cart.EventStream, Data: cart.StreamData{Stream: map[string]string{"id": sid, "status": "idle"}}})
	cancel()
	for _, r := range places {
		r.Cancel()
	}
	m := c.nextOf(t, "stream")
	if !strings.Contains(string(m.Stream), `"status":"idle"`) {
		t.Fatalf("stream event %s, want status idle", m.Stream)
	}
	if n, _ := ts.hub.queued(sid); n != 0 {
		t.Fatalf("%d events still queued", n)
	}
}
