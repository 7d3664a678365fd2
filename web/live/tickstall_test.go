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
//
// The figures leave room for a loaded machine: a viewer is dropped after 2 pings'
// time (3 s) without an answer, so only a stall of the test process over ~1.5 s
// could drop one here; a node that stops pinging while its round over 4 streams waits
// (8 s) drops them all within ~3.3 s of the freeze, well inside the 5 s frozen.
func TestPingsGoOnWhileRedisIsFrozen(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	r, rdb, bus := startHangableBus(t, "tickstall")
	const (
		ping   = 1500 * time.Millisecond
		frozen = 5 * time.Second
	)
	ts := newTestServer(t, Config{Bus: bus, Presence: NewRedisPresence(rdb, "tickstall", "node-a", nil), PingInterval: ping})
	var cs []*client
	for range 4 {
		c := ts.dial(t, uuid.NewString(), "")
		if m := c.next(t); m.Type != EventSnapshot {
			t.Fatalf("first frame: got %s, want snapshot", m.Type)
		}
		cs = append(cs, c)
	}
	time.Sleep(ping) // a ping and its answer with Redis up
	before := make([]int64, len(cs))
	for i, c := range cs {
		before[i] = c.pings.Load()
	}
	thaw := r.freezeTillThaw(t)
	time.Sleep(frozen) // 3 pings' time; a round of 4 streams' counts takes 8 s
	for i, c := range cs {
		select {
		case <-c.closed:
			t.Fatalf("viewer %d of 4 dropped (close code %d) while Redis was frozen for %v, answering every ping", i, c.closeCode, frozen)
		default:
		}
		// 3 pings are due; a node whose pings wait for Redis sends one at most (in the
		// quarter second before its viewer counts' round gets stuck).
		if n := c.pings.Load() - before[i]; n < 2 {
			t.Fatalf("viewer %d of 4 got %d pings while Redis was frozen for %v, want at least 2 (one every %v)", i, n, frozen, ping)
		}
	}
	thaw()
}
