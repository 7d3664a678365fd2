package live

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestPingsGoOnWhileRedisIsFrozen: Redis stops answering (frozen) while a node has
// viewers of several streams. The viewers count's and the presence's calls each wait
// their 2 s bound per stream; meanwhile the node must keep pinging its websockets (and
// so keep the ones that answer), not stop pinging until a round over every stream is
// through and then drop the viewers for not answering pings never sent.
func TestPingsGoOnWhileRedisIsFrozen(t *testing.T) {
	r, rdb, bus := startHangableBus(t, "tickstall")
	const ping = 300 * time.Millisecond // a client silent for 600 ms is dropped
	ts := newTestServer(t, Config{Bus: bus, Presence: NewRedisPresence(rdb, "tickstall", "node-a", nil), PingInterval: ping})
	var cs []*client
	for range 4 {
		c := ts.dial(t, uuid.NewString(), "")
		if m := c.next(t); m.Type != EventSnapshot {
			t.Fatalf("first frame: got %s, want snapshot", m.Type)
		}
		cs = append(cs, c)
	}
	time.Sleep(2 * ping) // a round of pings and answers with Redis up
	thaw := r.freezeTillThaw(t)
	time.Sleep(3 * time.Second) // 10 pings' time; a round of 4 streams' counts takes 8 s
	for i, c := range cs {
		select {
		case <-c.closed:
			t.Fatalf("viewer %d of 4 dropped (close code %d) while Redis was frozen for 3 s, answering every ping", i, c.closeCode)
		default:
		}
	}
	thaw()
}
