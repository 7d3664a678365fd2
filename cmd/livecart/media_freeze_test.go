package main

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/livecart/livecart/web/auth"
)

// TestMediaAndWebsocketBoundedOnFrozenRedis: Redis freezes; the WHIP and WHEP
// requests (offer, trickle PATCH, DELETE) and the websocket route, whose store calls
// the /api/ routes' deadline did not cover, answer 503 unavailable with Retry-After
// within the store's request timeout (they waited out Redis's 3 s read timeout and its
// retries before). After the thaw the node serves them again by itself.
func TestMediaAndWebsocketBoundedOnFrozenRedis(t *testing.T) {
	var armed atomic.Bool
	base, proxy, thaw := startStallingServer(t, "lc-mediafreeze", func([][]byte) bool { return armed.Load() })
	creator := mint(t, auth.RoleCreator, "alice")
	var st struct{ ID string }
	call(t, "POST", base+"/api/streams", creator, map[string]string{"title": "A"}, 201, &st)

	sdp := func(method, path, token, ctype string) *http.Request {
		req, _ := http.NewRequest(method, base+path, strings.NewReader("v=0\r\n"))
		req.Header.Set("Content-Type", ctype)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return req
	}
	requests := []struct {
		what string
		req  func() *http.Request
	}{
		{"websocket", func() *http.Request {
			req, _ := http.NewRequest("GET", base+"/ws/"+st.ID, nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			return req
		}},
		{"WHIP offer", func() *http.Request { return sdp("POST", "/whip/"+st.ID, creator, "application/sdp") }},
		{"WHEP offer", func() *http.Request { return sdp("POST", "/whep/"+st.ID, "", "application/sdp") }},
		{"WHEP trickle", func() *http.Request {
			return sdp("PATCH", "/whep/"+st.ID+"/nosession", "", "application/trickle-ice-sdpfrag")
		}},
		{"WHIP delete", func() *http.Request { return sdp("DELETE", "/whip/"+st.ID+"/nosession", creator, "application/sdp") }},
	}

	armed.Store(true)
	http.Get(base + "/api/streams/" + st.ID) // trips the freeze
	select {
	case <-proxy.tripped:
	case <-time.After(5 * time.Second):
		t.Fatal("Redis was not frozen")
	}
	thawed := false
	defer func() {
		if !thawed {
			thaw()
		}
	}()
	for _, r := range requests {
		start := time.Now()
		resp, err := http.DefaultClient.Do(r.req())
		if err != nil {
			t.Fatalf("%s: %v", r.what, err)
		}
		took := time.Since(start)
		t.Logf("%s with Redis frozen answered after %v", r.what, took.Round(time.Millisecond))
		wantUnavailable(t, r.what+" with Redis frozen", resp)
		if took > frozenAnswerWithin {
			t.Fatalf("%s with Redis frozen answered after %v, want within %v", r.what, took, frozenAnswerWithin)
		}
	}

	thaw()
	thawed = true
	deadline := time.Now().Add(10 * time.Second)
	for {
		url := strings.Replace(base, "http://", "ws://", 1) + "/ws/" + st.ID
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, raw, err := c.ReadMessage()
			c.Close()
			if err == nil && strings.Contains(string(raw), `"type":"snapshot"`) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no websocket snapshot within 10 s of the thaw: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The store answers the media routes again: a bad offer is the client's fault now.
	resp, err := http.DefaultClient.Do(requests[2].req())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("WHEP with a bad offer after the thaw: got %d, want 400", resp.StatusCode)
	}
}

// TestPublisherRefusedWhenStreamCannotGoLive: Redis freezes right when a WHIP
// publisher's arrival records the stream live (the relay's publisher callback). The
// WHIP answers 503 unavailable within about the store's request timeout and the
// session is closed, instead of answering 201 after Redis's 3 s read timeout with the
// stream left idle while its media flows. After the thaw the publisher comes back and
// the stream is live.
func TestPublisherRefusedWhenStreamCannotGoLive(t *testing.T) {
	var sid atomic.Pointer[string]
	base, proxy, thaw := startStallingServer(t, "lc-pubfreeze", arrivalOf(&sid))
	creator, id, api, thaw := armedStream(t, base, &sid, thaw)
	defer thaw() // if the test fails with Redis frozen
	start := time.Now()
	_, err := tryPublish(t, api, base, id, creator)
	took := time.Since(start)
	t.Logf("WHIP while the stream cannot be recorded live answered after %v", took.Round(time.Millisecond))
	select {
	case <-proxy.tripped:
	default:
		t.Fatal("the publisher's arrival did not reach the stream_live script")
	}
	if err == nil || !strings.Contains(err.Error(), "503") || took > 2*frozenAnswerWithin {
		t.Fatalf("WHIP while the stream cannot be recorded live: %v after %v, want 503 within %v", err, took, 2*frozenAnswerWithin)
	}

	thaw()
	deadline := time.Now().Add(15 * time.Second)
	for {
		pub, err := tryPublish(t, api, base, id, creator)
		if err == nil {
			defer pub.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the publisher did not get in within 15 s of the thaw: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	var got struct{ Status string }
	for {
		call(t, "GET", base+"/api/streams/"+id, creator, nil, 200, &got)
		if got.Status == "live" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %q after the publisher came back, want live", got.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRefusedPublisherLeavesNothingBehind: a WHIP publisher on node A is refused
// because Redis froze while its arrival recorded the stream live
// (TestPublisherRefusedWhenStreamCannotGoLive), and it does not come back. The writes
// node A gave up on still run once Redis thaws (they waited in its socket): its claim
// as the stream's origin and the stream live. The refused session is recorded as a
// leave once Redis answers (retryLeaves; TestRefusedPublisherLeavesStreamIdle checks
// the status): the stream is idle within a few seconds of the thaw and stays so, and
// the claim is cleared with it, so a publisher on node B gets in at once instead of
// 409 conflict (stream already has a publisher) until the claim runs out (originTTL).
// (With b73351a alone: the stream stayed live, and node B's WHIP answered 409.)
func TestRefusedPublisherLeavesNothingBehind(t *testing.T) {
	var sid atomic.Pointer[string]
	srv, addr := freezableRedis(t)
	proxy := newTripProxy(t, addr, arrivalOf(&sid), func() { srv.Process.Signal(sigStop) })
	thaw := func() { srv.Process.Signal(sigCont) }
	prefix := "lc-pubgone-" + uuid.NewString()[:8]
	cfgA := redisConfig(t, "redis://"+proxy.addr+"/0", prefix)
	cfgA.NodeID = "a"
	baseA := "http://" + startMain(t, "node a", cfgA).Addr()
	cfgB := redisConfig(t, "redis://"+addr+"/0", prefix)
	cfgB.NodeID = "b"
	baseB := "http://" + startMain(t, "node b", cfgB).Addr()

	creator, id, api, thaw := armedStream(t, baseA, &sid, thaw)
	defer thaw() // if the test fails with Redis frozen
	if _, err := tryPublish(t, api, baseA, id, creator); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("WHIP while the stream cannot be recorded live: %v, want 503", err)
	}
	select {
	case <-proxy.tripped:
	default:
		t.Fatal("the publisher's arrival did not reach the stream_live script")
	}
	thaw()

	// The stream is idle within a few seconds of the thaw and stays so.
	deadline := time.Now().Add(4 * time.Second)
	var got struct{ Status string }
	for idle := 0; idle < 5; time.Sleep(100 * time.Millisecond) {
		call(t, "GET", baseB+"/api/streams/"+id, creator, nil, 200, &got)
		if got.Status == "idle" {
			idle++
		} else {
			idle = 0
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %q 4 s after the thaw with its publisher refused, want idle", got.Status)
		}
	}
	if _, err := tryPublish(t, api, baseB, id, creator); err != nil {
		t.Fatalf("a publisher on node B after the refused one on node A: %v, want it in", err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		call(t, "GET", baseA+"/api/streams/"+id, creator, nil, 200, &got)
		if got.Status == "live" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %q with its publisher on node B, want live", got.Status)
		}
	}
}
