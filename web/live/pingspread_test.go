package live

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestPingsSpreadOverTheInterval: each viewer is pinged once per PingInterval, but not
// all in the same moment: the viewers take the interval's seconds in turn, so a tick
// pings a share (here 30 viewers, a 3 s interval: 10 a second). A ping of every viewer
// at once costs the writer shards a whole fan-out and delays the event published
// meanwhile by that much (~120 ms at 10,000 viewers).
func TestPingsSpreadOverTheInterval(t *testing.T) {
	const (
		viewers  = 30
		interval = 3 * time.Second
	)
	ts := newTestServer(t, Config{PingInterval: interval, ViewersInterval: time.Hour})
	start := time.Now()
	var cs []*client
	for range viewers {
		c := ts.dial(t, sid, "")
		if m := c.next(t); m.Type != EventSnapshot {
			t.Fatalf("first frame: got %s, want snapshot", m.Type)
		}
		cs = append(cs, c)
	}
	// When each viewer's first ping came, to the 20 ms.
	first := make([]time.Duration, viewers)
	deadline := start.Add(interval + 600*time.Millisecond)
	for left := viewers; left > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d viewers not pinged within %v of the hub's start (interval %v)", left, viewers, time.Since(start).Round(time.Millisecond), interval)
		}
		time.Sleep(20 * time.Millisecond)
		for i, c := range cs {
			if first[i] == 0 && c.pings.Load() > 0 {
				first[i] = time.Since(start)
				left--
			}
		}
	}
	slices.Sort(first)
	// The most viewers pinged within any 300 ms: one second's share is 10; allow two
	// shares, for a test process stalled over a tick (-race, a loaded machine).
	most := 0
	for i := range first {
		j := i
		for j < len(first) && first[j]-first[i] < 300*time.Millisecond {
			j++
		}
		most = max(most, j-i)
	}
	if most > 2*viewers/3 {
		t.Fatalf("%d of %d viewers pinged within 300 ms (first pings at %v), want at most %d: the pings of an interval spread over its seconds", most, viewers, first, 2*viewers/3)
	}
}

// TestSnapshotBeforeAnyPing: a connection's first frame is its snapshot, also when a
// ping tick comes while it joins: here ticks every 5 ms and a snapshot read of 20 ms;
// with the pings spread over the interval a tick comes every second, and some of
// 10,000 joining viewers meet one (the load generator's first frame was a ping).
func TestSnapshotBeforeAnyPing(t *testing.T) {
	slow := SnapshotFunc(func(_ context.Context, sid string) (Snapshot, error) {
		time.Sleep(20 * time.Millisecond)
		return Snapshot{Stream: map[string]string{"id": sid, "status": "live"}}, nil
	})
	ts := newTestServer(t, Config{PingInterval: 5 * time.Millisecond, ViewersInterval: time.Hour, Snapshots: slow})
	for i := range 20 {
		ws, _, err := websocket.DefaultDialer.Dial(ts.url+"/ws/"+sid, nil)
		if err != nil {
			t.Fatal(err)
		}
		var early atomic.Bool // a ping before the first data frame
		var seen atomic.Bool
		ws.SetPingHandler(func(string) error {
			if !seen.Load() {
				early.Store(true)
			}
			return nil
		})
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, data, err := ws.ReadMessage()
		seen.Store(true)
		ws.Close()
		if err != nil {
			t.Fatalf("viewer %d: %v", i, err)
		}
		if early.Load() {
			t.Fatalf("viewer %d: a ping came before its first frame (%.40s)", i, data)
		}
	}
}

// pingAll has every connection of the room pinged at once (the hub pings a share a
// tick: pingShare).
func (r *room) pingAll() { r.pingShare(0, 1) }
