package live

import (
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
