package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v3"

	"github.com/livecart/livecart/stream/rtctest"
	"github.com/livecart/livecart/web/auth"
)

// leaveRecordedWithin bounds how long after Redis answers again a publisher's leave
// that it did not take is recorded: the retry's longest wait (2 s), one store call
// (redis.request_timeout, 1 s) and slack for a loaded machine.
const leaveRecordedWithin = 6 * time.Second

// isLeave: cmd is the stream_live script recording that sid's publisher left.
func isLeave(cmd [][]byte, sid string) bool { return isStreamLiveCall(cmd, sid, "0") }

// isArrival: cmd is the stream_live script recording sid live (its publisher arrived).
func isArrival(cmd [][]byte, sid string) bool { return isStreamLiveCall(cmd, sid, "1") }

// isStreamLiveCall: cmd is the stream_live script for sid with live ("1" an arrival,
// "0" a leave) as its first argument.
func isStreamLiveCall(cmd [][]byte, sid, live string) bool {
	keys, args, ok := scriptCall(cmd)
	return ok && len(keys) == 1 && bytes.Contains(keys[0], []byte(sid)) &&
		len(args) >= 2 && string(args[0]) == live && bytes.Contains(args[1], []byte("T"))
}

// arrivalOf matches the stream_live script recording the stream in sid live, once sid
// is set (nothing before).
func arrivalOf(sid *atomic.Pointer[string]) func(cmd [][]byte) bool {
	return func(cmd [][]byte) bool {
		s := sid.Load()
		return s != nil && isArrival(cmd, *s)
	}
}

// armedStream creates a stream on base (creator alice's, whose token it returns with
// the stream's id) and a pion API, and sets sid to the stream: arrivalOf(sid) matches
// its arrival from then on. The thaw it returns calls thaw once (defer it in case the
// test fails with Redis frozen).
func armedStream(t *testing.T, base string, sid *atomic.Pointer[string], thaw func()) (creator, id string, api *webrtc.API, thawOnce func()) {
	t.Helper()
	creator = mint(t, auth.RoleCreator, "alice")
	var st struct{ ID string }
	call(t, "POST", base+"/api/streams", creator, map[string]string{"title": "A"}, 201, &st)
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	sid.Store(&st.ID)
	var once sync.Once
	return creator, st.ID, api, func() { once.Do(thaw) }
}

// publishSession connects a publisher to base's WHIP for sid, sends media until the
// test ends, and returns its session (for its DELETE).
func publishSession(t *testing.T, api *webrtc.API, base, sid, token string) *session {
	t.Helper()
	pub, err := rtctest.NewPublisher(api, rtctest.PublisherOptions{KeyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var s session
	if err := pub.Connect(ctx, signalAt(base, "/whip/"+sid, token, &s)); err != nil {
		pub.Close()
		t.Fatalf("publish: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pub.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done; pub.Close() })
	return &s
}

// tryPublish connects a new publisher (keyframes only on request) to base's WHIP for
// sid and returns it with the outcome; the publisher is closed when the test ends.
func tryPublish(t *testing.T, api *webrtc.API, base, sid, token string) (*rtctest.Publisher, error) {
	t.Helper()
	pub, err := rtctest.NewPublisher(api, rtctest.PublisherOptions{KeyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return pub, pub.Connect(ctx, signalAt(base, "/whip/"+sid, token, nil))
}

// streamStatuses reads the viewer's frames in the background and passes on the status
// of each stream event (a read deadline would break the connection).
func streamStatuses(t *testing.T, c *websocket.Conn) <-chan string {
	out := make(chan string, 16)
	c.SetReadDeadline(time.Time{}) // next's
	go func() {
		for {
			_, raw, err := c.ReadMessage()
			if err != nil {
				return
			}
			var f frame
			var st struct{ Status string }
			if json.Unmarshal(raw, &f) == nil && f.Type == "stream" && json.Unmarshal(f.Stream, &st) == nil {
				out <- st.Status
			}
		}
	}()
	return out
}

// nextStreamStatus waits d at most for the next stream event's status ("" if none
// came).
func nextStreamStatus(events <-chan string, d time.Duration) string {
	select {
	case s := <-events:
		return s
	case <-time.After(d):
		return ""
	}
}

// streamStatus is the stream's status on GET /api/streams/{sid}.
func streamStatus(t *testing.T, base, sid string) string {
	t.Helper()
	var got struct{ Status string }
	call(t, "GET", base+"/api/streams/"+sid, "", nil, 200, &got)
	return got.Status
}

// liveStream is a stream on a server (startLiveStream) with a publisher and a viewer.
type liveStream struct {
	m                  *Main
	base, creator, sid string
	events             <-chan string // the viewer's stream events' statuses
	api                *webrtc.API
	pub                *session
}

// startLiveStream starts a server on the Redis at redisAddr (key prefix prefix-<8 hex>)
// and creates a stream with a viewer following its stream events and a publisher
// sending media; the viewer is told live.
func startLiveStream(t *testing.T, redisAddr, prefix string) *liveStream {
	t.Helper()
	m := startMain(t, "server", redisConfig(t, "redis://"+redisAddr+"/0", prefix+"-"+uuid.NewString()[:8]))
	base := "http://" + m.Addr()
	creator := mint(t, auth.RoleCreator, "alice")
	var st struct{ ID string }
	call(t, "POST", base+"/api/streams", creator, map[string]string{"title": "A"}, 201, &st)
	ws := dialWS(t, base, st.ID, "")
	next(t, ws, "snapshot")
	events := streamStatuses(t, ws)
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	pub := publishSession(t, api, base, st.ID, creator)
	if got := nextStreamStatus(events, 5*time.Second); got != "live" {
		t.Fatalf("viewer's stream event after the publisher arrived: %q, want live", got)
	}
	return &liveStream{m: m, base: base, creator: creator, sid: st.ID, events: events, api: api, pub: pub}
}

// TestPublisherLeaveRecordedAfterOutage: the node loses Redis (its commands no longer
// reach it) right when its publisher's leave (WHIP DELETE) records the stream idle.
// The DELETE answers, the leave stays pending on the node, and once Redis answers
// again the stream turns idle by itself within leaveRecordedWithin, on GET and for a
// viewer (stream event). Before, the failed write was dropped: the stream stayed live
// for ever with no media flowing.
func TestPublisherLeaveRecordedAfterOutage(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	_, addr := freezableRedis(t)
	var armed atomic.Pointer[string]
	var cut atomic.Bool
	tripped := make(chan struct{})
	var once sync.Once
	proxy := newCmdProxy(t, addr, func(cmd [][]byte) bool {
		if cut.Load() {
			return false
		}
		if sid := armed.Load(); sid != nil && isLeave(cmd, *sid) {
			cut.Store(true)
			armed.Store(nil)
			once.Do(func() { close(tripped) })
			return false
		}
		return true
	})
	ls := startLiveStream(t, proxy.addr, "lc-leave")
	m, base, creator, sid, events, pub := ls.m, ls.base, ls.creator, ls.sid, ls.events, ls.pub

	armed.Store(&sid)
	pub.end(t, creator)
	select {
	case <-tripped:
	case <-time.After(5 * time.Second):
		t.Fatal("the publisher's leave did not reach the stream_live script")
	}
	time.Sleep(2 * time.Second) // a few retries fail meanwhile
	if n := m.web.PendingLeaves(); n != 1 {
		t.Fatalf("pending leaves while Redis is cut off: %d, want 1", n)
	}

	cut.Store(false)
	back := time.Now()
	for streamStatus(t, base, sid) != "idle" {
		if time.Since(back) > leaveRecordedWithin {
			t.Fatalf("stream still live %v after Redis answers again, want idle within %v", time.Since(back), leaveRecordedWithin)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("stream idle %v after Redis answers again", time.Since(back).Round(time.Millisecond))
	if got := nextStreamStatus(events, leaveRecordedWithin); got != "idle" {
		t.Fatalf("viewer's stream event after Redis answers again: %q, want idle", got)
	}
	if n := m.web.PendingLeaves(); n != 0 {
		t.Fatalf("pending leaves once recorded: %d, want 0", n)
	}
}

// TestStaleLeaveNeverUndoesReturnedPublisher: a publisher's leave is held on its way
// to Redis (its every try, the first and the node's retries, until the test lets them
// through) while the publisher comes back with a new session and the stream is
// recorded live. The held leaves reach Redis after that, late: the stream stays live,
// no viewer is told idle, and the node drops the leave (the store fences the status by
// session). Before, the late leave recorded the stream idle while the new publisher's
// media flowed. The new publisher's own leave then turns it idle.
func TestStaleLeaveNeverUndoesReturnedPublisher(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	_, addr := freezableRedis(t)
	var armed atomic.Pointer[string]
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	proxy := newCmdProxy(t, addr, func(cmd [][]byte) bool {
		if sid := armed.Load(); sid != nil && isLeave(cmd, *sid) {
			select {
			case held <- struct{}{}:
			default:
			}
			<-release
		}
		return true
	})
	released := false
	let := func() {
		if !released {
			released = true
			close(release)
		}
	}
	t.Cleanup(let) // before the proxy's cleanup waits for its connections
	ls := startLiveStream(t, proxy.addr, "lc-staleleave")
	m, base, creator, sid, events, api, first := ls.m, ls.base, ls.creator, ls.sid, ls.events, ls.api, ls.pub

	armed.Store(&sid)
	first.end(t, creator)
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("the publisher's leave did not reach the stream_live script")
	}
	second := publishSession(t, api, base, sid, creator)
	if got := streamStatus(t, base, sid); got != "live" {
		t.Fatalf("stream after the publisher came back: %q, want live", got)
	}
	let()
	// The held leaves land now; the node's next retry finds the stream another's.
	deadline := time.Now().Add(leaveRecordedWithin)
	for time.Now().Before(deadline) {
		if got := nextStreamStatus(events, time.Until(deadline)); got == "idle" {
			t.Fatal("viewer told idle by the first publisher's late leave while the second publishes")
		}
	}
	if got := streamStatus(t, base, sid); got != "live" {
		t.Fatalf("stream after the first publisher's late leave: %q, want live (the second publishes)", got)
	}
	if n := m.web.PendingLeaves(); n != 0 {
		t.Fatalf("pending leaves after Redis took them: %d, want 0", n)
	}

	armed.Store(nil)
	second.end(t, creator)
	if got := streamStatus(t, base, sid); got != "idle" {
		t.Fatalf("stream after the second publisher left: %q, want idle", got)
	}
	if got := nextStreamStatus(events, 5*time.Second); got != "idle" {
		t.Fatalf("viewer's stream event after the second publisher left: %q, want idle", got)
	}
}

// TestRefusedPublisherLeavesStreamIdle: Redis freezes (SIGSTOP) right when a WHIP
// publisher's arrival records the stream live; the publisher is refused (503). Its
// write waits in Redis and runs at the thaw, late. The stream still ends up idle
// within leaveRecordedWithin of the thaw and stays so: the refusal is recorded as the
// session's leave, retried until Redis takes it, and the store fences the late
// arrival. Before, the late write left the stream live for ever with no publisher.
func TestRefusedPublisherLeavesStreamIdle(t *testing.T) {
	var sid atomic.Pointer[string]
	base, proxy, thaw := startStallingServer(t, "lc-refusedidle", arrivalOf(&sid))
	creator, id, api, thaw := armedStream(t, base, &sid, thaw)
	defer thaw() // if the test fails with Redis frozen
	_, err := tryPublish(t, api, base, id, creator)
	select {
	case <-proxy.tripped:
	default:
		t.Fatal("the publisher's arrival did not reach the stream_live script")
	}
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("WHIP while the stream cannot be recorded live: %v, want 503", err)
	}

	thaw()
	back := time.Now()
	for streamStatus(t, base, id) != "idle" {
		if time.Since(back) > leaveRecordedWithin {
			t.Fatalf("stream live %v after the thaw with its publisher refused, want idle within %v", time.Since(back), leaveRecordedWithin)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Idle for good: the late arrival, if it has not run yet, changes nothing.
	for end := time.Now().Add(leaveRetryWait); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if got := streamStatus(t, base, id); got != "idle" {
			t.Fatalf("stream %q after it was recorded idle, with its publisher refused", got)
		}
	}
}

// leaveRetryWait is the leave retry's longest wait and a store call: by then a pending
// leave has been tried again.
const leaveRetryWait = 3 * time.Second
