package live

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestHeartbeatOnlyOnSilentStreamsAndWhenAsked: a connection that asked for heartbeats
// (?heartbeat=1) gets one, without seq, once its stream has sent nothing for
// HeartbeatAfter, and none while events flow; a connection that did not ask (every
// client of API.md) never gets one, so its frames stay as the contract lists them.
func TestHeartbeatOnlyOnSilentStreamsAndWhenAsked(t *testing.T) {
	ts := newTestServer(t, Config{PingInterval: time.Second, HeartbeatAfter: 500 * time.Millisecond, ViewersInterval: time.Hour})
	asked := ts.dial(t, sid, "heartbeat=1")
	plain := ts.dial(t, sid, "")
	snap := asked.next(t)
	if snap.Type != EventSnapshot {
		t.Fatalf("first frame: got %s, want snapshot", snap.Type)
	}
	plain.next(t)

	start := time.Now()
	m := asked.next(t)
	if m.Type != EventHeartbeat || m.Seq != 0 {
		t.Fatalf("on a silent stream: got %s seq %d, want a heartbeat without seq", m.Type, m.Seq)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("heartbeat after %v of silence, want within ~1.5 s (the silence, then the next tick)", took)
	}

	// Events every 100 ms: the stream is not silent, no heartbeat.
	for range 15 {
		announce(ts.hub, sid, "tick")
		time.Sleep(100 * time.Millisecond)
	}
	for range 15 {
		if m := asked.next(t); m.Type != EventAnnounce {
			t.Errorf("while events flow: got %s, want only the announce events", m.Type)
		} else if m.Seq != snap.Seq+1 {
			t.Errorf("announce seq: got %d, want %d (heartbeats take no seq)", m.Seq, snap.Seq+1)
		}
		snap.Seq++
	}
	time.Sleep(time.Second) // silent again: the asking connection gets heartbeats
	if m := asked.next(t); m.Type != EventHeartbeat {
		t.Errorf("silent again: got %s, want a heartbeat", m.Type)
	}
	for range 15 {
		if m := plain.next(t); m.Type != EventAnnounce {
			t.Errorf("a connection that did not ask: got %s, want only the announce events", m.Type)
		}
	}
	select {
	case m := <-plain.msgs:
		t.Errorf("a connection that did not ask got %s after the events, want nothing", m.Type)
	default:
	}
}

// TestHeartbeatOnTheNearestTick: the heartbeat goes out on the ping tick nearest to
// HeartbeatAfter of silence, so a client sees silences of HeartbeatAfter ± half a tick.
// It went on the first tick past HeartbeatAfter: silences of 5–6 s against the watch
// page's 7 s before it pings, which a heartbeat delivered a second late on a loaded
// machine turned into a ping. The hub's clock is the test's: the stream has been silent
// for 4.4 s (more than half a tick short of 5 s: no heartbeat on the next ticks), then
// for 4.6 s (within half a tick: a heartbeat on the next one).
func TestHeartbeatOnTheNearestTick(t *testing.T) {
	t.Parallel() // waits on the hub's ticks: see TestMain
	start := time.Now()
	var elapsed atomic.Int64
	now := func() time.Time { return start.Add(time.Duration(elapsed.Load())) }
	ts := newTestServer(t, Config{Now: now, PingInterval: time.Second, HeartbeatAfter: 5 * time.Second, ViewersInterval: time.Hour})
	c := ts.dial(t, sid, "heartbeat=1")
	if m := c.next(t); m.Type != EventSnapshot {
		t.Fatalf("first frame: got %s, want snapshot", m.Type)
	}
	announce(ts.hub, sid, "the last event") // sent at the clock's start
	if m := c.next(t); m.Type != EventAnnounce {
		t.Fatalf("got %s, want the announce event", m.Type)
	}
	elapsed.Store(int64(4400 * time.Millisecond))
	select {
	case m := <-c.msgs:
		t.Fatalf("after 4.4 s of silence (5 s less 0.6 s, two ticks of 1 s): got %s, want nothing yet", m.Type)
	case <-time.After(2500 * time.Millisecond):
	}
	elapsed.Store(int64(4600 * time.Millisecond))
	select {
	case m := <-c.msgs:
		if m.Type != EventHeartbeat {
			t.Fatalf("after 4.6 s of silence: got %s, want a heartbeat", m.Type)
		}
	case <-time.After(2500 * time.Millisecond):
		t.Fatal("after 4.6 s of silence (5 s less 0.4 s): no heartbeat on the next two ticks of 1 s, want one on the nearest tick")
	}
}
