package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/stream"
	"github.com/livecart/livecart/stream/rtctest"
	"github.com/livecart/livecart/web/auth"
)

// newMediaEnv is a test server with a real relay on a loopback UDP port, its publisher
// callback wired as cmd/livecart does.
func newMediaEnv(t *testing.T, tweak ...func(*Deps)) *testEnv {
	t.Helper()
	var srv atomic.Pointer[Server]
	relay, err := stream.New(stream.Options{ListenIP: "127.0.0.1", OnPublisher: func(sid, session string, live bool) {
		if s := srv.Load(); s != nil {
			s.OnPublisher(sid, session, live)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	e := newTestEnv(t, append([]func(*Deps){func(d *Deps) {
		d.Media = relay
		d.Options.ICEServers = []string{"stun:stun.example.net:3478"}
	}}, tweak...)...)
	srv.Store(e.web)
	return e
}

var mediaClientAPI = sync.OnceValues(rtctest.NewAPI)

// sdpOffer returns a complete offer: a publisher's (sendonly audio+video) or a viewer's.
func sdpOffer(t *testing.T, publisher bool) string {
	t.Helper()
	api, err := mediaClientAPI()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := rtctest.NewPeer(api, publisher)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	offer, err := rtctest.Offer(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	return offer
}

// unknownCodecs renames every codec of an offer to one nobody has.
func unknownCodecs(offer string) string {
	return regexp.MustCompile(`(?m)^a=rtpmap:(\d+) [^/\r\n]+/`).ReplaceAllString(offer, "a=rtpmap:$1 x-unknown/")
}

// sdpReq sends a WHIP/WHEP request with a raw body and content type.
func (e *testEnv) sdpReq(method, path, token, contentType, body string, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

func (e *testEnv) streamStatus(sid string) cart.StreamStatus {
	e.t.Helper()
	var st StreamView
	resp, raw := e.do("GET", "/api/streams/"+sid, "", nil)
	e.expect(resp, raw, http.StatusOK, "", &st)
	return st.Status
}

func TestWHIPChecks(t *testing.T) {
	e := newMediaEnv(t)
	st := e.createStream("alice")
	offer := sdpOffer(t, true)
	owner := e.token(auth.RoleCreator, "alice")
	tests := []struct {
		name        string
		path, token string
		ct, body    string
		status      int
		code        string
	}{
		{"no bearer", "/whip/" + st.ID, "", "application/sdp", offer, 401, "unauthorized"},
		{"bearer neither token nor key", "/whip/" + st.ID, "sk_wrong", "application/sdp", offer, 401, "unauthorized"},
		{"unknown stream", "/whip/" + uuid.NewString(), owner, "application/sdp", offer, 404, "not_found"},
		{"not a uuid", "/whip/nope", owner, "application/sdp", offer, 404, "not_found"},
		{"another creator", "/whip/" + st.ID, e.token(auth.RoleCreator, "bob"), "application/sdp", offer, 403, "forbidden"},
		{"a viewer", "/whip/" + st.ID, e.token(auth.RoleViewer, "carol"), "application/sdp", offer, 403, "forbidden"},
		{"wrong content type", "/whip/" + st.ID, owner, "application/json", offer, 415, "unsupported_media_type"},
		{"too large", "/whip/" + st.ID, owner, "application/sdp", strings.Repeat("a", MaxSDPBody+1), 413, "payload_too_large"},
		{"bad sdp", "/whip/" + st.ID, owner, "application/sdp", "v=0\r\nnonsense", 400, "bad_request"},
		// A viewer's offer (it only receives) publishes nothing: it took the stream live
		// with no media and refused the real publisher 409 while it stayed.
		{"an offer that sends nothing", "/whip/" + st.ID, owner, "application/sdp", sdpOffer(t, false), 400, "bad_request"},
		// An offer of codecs the relay does not take: every section of the answer is
		// rejected (port 0), so nothing could be relayed.
		{"no codec in common", "/whip/" + st.ID, owner, "application/sdp", unknownCodecs(offer), 400, "bad_request"},
	}
	for _, tt := range tests {
		resp, raw := e.sdpReq("POST", tt.path, tt.token, tt.ct, tt.body)
		if resp.StatusCode != tt.status {
			t.Errorf("%s: got %d, want %d (%s)", tt.name, resp.StatusCode, tt.status, raw)
			continue
		}
		var er struct{ Error struct{ Code string } }
		if err := json.Unmarshal(raw, &er); err != nil || er.Error.Code != tt.code {
			t.Errorf("%s: got body %s, want code %s", tt.name, raw, tt.code)
		}
	}
	if got := e.streamStatus(st.ID); got != cart.StreamIdle {
		t.Errorf("status after failed WHIPs: got %s, want idle", got)
	}
	// The bound is inclusive: an offer of exactly MaxSDPBody bytes (padded with an
	// attribute nobody reads) is taken.
	pad := "a=x-pad:" + strings.Repeat("p", MaxSDPBody-len(offer)-len("a=x-pad:\r\n")) + "\r\n"
	resp, raw := e.sdpReq("POST", "/whip/"+st.ID, owner, "application/sdp", offer+pad)
	if len(offer+pad) != MaxSDPBody || resp.StatusCode != http.StatusCreated {
		t.Errorf("offer of %d bytes (MaxSDPBody %d): got %d %.200s, want 201", len(offer+pad), MaxSDPBody, resp.StatusCode, raw)
	}
}

func TestWHIPSessionLifecycle(t *testing.T) {
	e := newMediaEnv(t)
	st := e.createStream("alice")
	key := st.StreamKey

	resp, raw := e.sdpReq("POST", "/whip/"+st.ID, key, "application/sdp", sdpOffer(t, true))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHIP with stream key: got %d, want 201 (%s)", resp.StatusCode, raw)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "/whip/"+st.ID+"/") || len(loc) <= len("/whip/"+st.ID+"/") {
		t.Errorf("Location = %q, want /whip/%s/{id}", loc, st.ID)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/sdp" {
		t.Errorf("Content-Type = %q, want application/sdp", ct)
	}
	if resp.Header.Get("ETag") == "" || !bytes.HasPrefix(raw, []byte("v=0")) {
		t.Errorf("got ETag %q and body %.20q, want an ETag and an SDP answer", resp.Header.Get("ETag"), raw)
	}
	if got := e.streamStatus(st.ID); got != cart.StreamLive {
		t.Errorf("status after WHIP: got %s, want live", got)
	}
	var first StreamView
	resp, raw = e.do("GET", "/api/streams/"+st.ID, "", nil)
	e.expect(resp, raw, http.StatusOK, "", &first)
	if first.StartedAt == nil || first.EndedAt != nil {
		t.Fatalf("live stream: got started_at %v ended_at %v, want a time and null", first.StartedAt, first.EndedAt)
	}

	owner := e.token(auth.RoleCreator, "alice")
	resp, raw = e.sdpReq("POST", "/whip/"+st.ID, owner, "application/sdp", sdpOffer(t, true))
	e.expect(resp, raw, http.StatusConflict, "conflict", nil)

	resp, raw = e.sdpReq("PATCH", loc, key, "application/sdp", "a=ice-ufrag:x\r\n")
	e.expect(resp, raw, http.StatusUnsupportedMediaType, "unsupported_media_type", nil)
	resp, raw = e.sdpReq("PATCH", loc, key, "application/trickle-ice-sdpfrag", "a=ice-ufrag:restart\r\na=ice-pwd:newpassword\r\n")
	e.expect(resp, raw, http.StatusUnprocessableEntity, "unprocessable", nil)
	// A fragment that is not one is a bad fragment, not a bad "SDP offer".
	resp, raw = e.sdpReq("PATCH", loc, key, "application/trickle-ice-sdpfrag", "hello\r\n")
	e.expect(resp, raw, http.StatusBadRequest, "bad_request", nil)
	if !strings.Contains(string(raw), "trickle ICE fragment") || strings.Contains(string(raw), "offer") {
		t.Fatalf("PATCH of a bad fragment: got %s, want it named a trickle ICE fragment", raw)
	}

	resp, raw = e.sdpReq("DELETE", loc, "", "", "")
	e.expect(resp, raw, http.StatusUnauthorized, "unauthorized", nil)
	resp, raw = e.sdpReq("DELETE", loc, e.token(auth.RoleCreator, "bob"), "", "")
	e.expect(resp, raw, http.StatusForbidden, "forbidden", nil)
	resp, raw = e.sdpReq("DELETE", loc, key, "", "")
	e.expect(resp, raw, http.StatusOK, "", nil)
	if got := e.streamStatus(st.ID); got != cart.StreamIdle {
		t.Errorf("status after DELETE: got %s, want idle", got)
	}
	resp, raw = e.sdpReq("DELETE", loc, key, "", "")
	e.expect(resp, raw, http.StatusNotFound, "not_found", nil)
	// The check order: 401 (no bearer, or neither a token nor the key), then 404 (the
	// session), then 403 (a valid token of someone else).
	bob := e.token(auth.RoleCreator, "bob")
	for _, m := range []string{"DELETE", "PATCH"} {
		resp, raw = e.sdpReq(m, loc, "", "application/trickle-ice-sdpfrag", "a=mid:0\r\n")
		e.expect(resp, raw, http.StatusUnauthorized, "unauthorized", nil)
		resp, raw = e.sdpReq(m, loc, "sk_wrong", "application/trickle-ice-sdpfrag", "a=mid:0\r\n")
		e.expect(resp, raw, http.StatusUnauthorized, "unauthorized", nil)
		resp, raw = e.sdpReq(m, loc, bob, "application/trickle-ice-sdpfrag", "a=mid:0\r\n")
		e.expect(resp, raw, http.StatusNotFound, "not_found", nil)
		resp, raw = e.sdpReq(m, "/whip/"+st.ID+"/nope", e.token(auth.RoleViewer, "vic"), "application/trickle-ice-sdpfrag", "a=mid:0\r\n")
		e.expect(resp, raw, http.StatusNotFound, "not_found", nil)
	}

	// Live again with the owner's token.
	resp, raw = e.sdpReq("POST", "/whip/"+st.ID, owner, "application/sdp; charset=utf-8", sdpOffer(t, true))
	e.expect(resp, raw, http.StatusCreated, "", nil)
	if got := e.streamStatus(st.ID); got != cart.StreamLive {
		t.Errorf("status after second WHIP: got %s, want live", got)
	}
	// API.md: started_at is set when it *first* goes live.
	var again StreamView
	resp, raw = e.do("GET", "/api/streams/"+st.ID, "", nil)
	e.expect(resp, raw, http.StatusOK, "", &again)
	if again.StartedAt == nil || !again.StartedAt.Equal(*first.StartedAt) {
		t.Errorf("started_at after going live again: got %v, want the first time %v", again.StartedAt, first.StartedAt)
	}
}

func TestWHEPSessionLifecycle(t *testing.T) {
	e := newMediaEnv(t)
	st := e.createStream("alice")
	resp, raw := e.sdpReq("POST", "/whep/"+st.ID, "", "text/plain", sdpOffer(t, false))
	e.expect(resp, raw, http.StatusUnsupportedMediaType, "unsupported_media_type", nil)
	resp, raw = e.sdpReq("POST", "/whep/"+uuid.NewString(), "", "application/sdp", sdpOffer(t, false))
	e.expect(resp, raw, http.StatusNotFound, "not_found", nil)
	resp, raw = e.sdpReq("POST", "/whep/"+st.ID, "", "application/sdp", "garbage")
	e.expect(resp, raw, http.StatusBadRequest, "bad_request", nil)
	// A publisher's offer (it only sends) receives nothing: it was answered 201 sendrecv.
	resp, raw = e.sdpReq("POST", "/whep/"+st.ID, "", "application/sdp", sdpOffer(t, true))
	e.expect(resp, raw, http.StatusBadRequest, "bad_request", nil)
	resp, raw = e.sdpReq("POST", "/whep/"+st.ID, "", "application/sdp", unknownCodecs(sdpOffer(t, false)))
	e.expect(resp, raw, http.StatusBadRequest, "bad_request", nil)

	resp, raw = e.sdpReq("POST", "/whep/"+st.ID, "", "application/sdp", sdpOffer(t, false))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("anonymous WHEP: got %d, want 201 (%s)", resp.StatusCode, raw)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "/whep/"+st.ID+"/") || resp.Header.Get("Content-Type") != "application/sdp" {
		t.Errorf("got Location %q Content-Type %q", loc, resp.Header.Get("Content-Type"))
	}
	if links := resp.Header.Values("Link"); len(links) != 1 || links[0] != `<stun:stun.example.net:3478>; rel="ice-server"` {
		t.Errorf("Link = %q, want the configured ICE server", links)
	}
	etag := resp.Header.Get("ETag")
	resp, raw = e.sdpReq("PATCH", loc, "", "application/trickle-ice-sdpfrag", "a=mid:0\r\n", "If-Match", `"other"`)
	e.expect(resp, raw, http.StatusPreconditionFailed, "precondition_failed", nil)
	resp, _ = e.sdpReq("PATCH", loc, "", "application/trickle-ice-sdpfrag",
		"a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n", "If-Match", etag)
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("trickle PATCH: got %d, want 204", resp.StatusCode)
	}
	resp, raw = e.sdpReq("DELETE", loc, "", "", "")
	e.expect(resp, raw, http.StatusOK, "", nil)
	resp, raw = e.sdpReq("DELETE", loc, "", "", "")
	e.expect(resp, raw, http.StatusNotFound, "not_found", nil)
	resp, raw = e.sdpReq("DELETE", "/whep/"+st.ID+"/nope", "", "", "")
	e.expect(resp, raw, http.StatusNotFound, "not_found", nil)
}

func TestMediaOnEndedStream(t *testing.T) {
	e := newMediaEnv(t)
	st := e.createStream("alice")
	owner := e.token(auth.RoleCreator, "alice")
	resp, raw := e.sdpReq("POST", "/whep/"+st.ID, "", "application/sdp", sdpOffer(t, false))
	e.expect(resp, raw, http.StatusCreated, "", nil)
	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/end", owner, nil)
	e.expect(resp, raw, http.StatusOK, "", nil)
	resp, raw = e.sdpReq("POST", "/whip/"+st.ID, owner, "application/sdp", sdpOffer(t, true))
	e.expect(resp, raw, http.StatusConflict, "conflict", nil)
	resp, raw = e.sdpReq("POST", "/whep/"+st.ID, "", "application/sdp", sdpOffer(t, false))
	e.expect(resp, raw, http.StatusConflict, "conflict", nil)
	// The request's shape is judged before the business rule (400 before 409).
	resp, raw = e.sdpReq("POST", "/whip/"+st.ID, owner, "application/sdp", "garbage")
	e.expect(resp, raw, http.StatusBadRequest, "bad_request", nil)
	resp, raw = e.sdpReq("POST", "/whep/"+st.ID, "", "application/sdp", "v=0\r\n")
	e.expect(resp, raw, http.StatusBadRequest, "bad_request", nil)
	if got := e.streamStatus(st.ID); got != cart.StreamEnded {
		t.Errorf("status: got %s, want ended", got)
	}
}

func TestMediaOptions(t *testing.T) {
	e := newMediaEnv(t)
	st := e.createStream("alice")
	resp, _ := e.sdpReq("OPTIONS", "/whip/"+st.ID, "", "", "", "Origin", "https://shop.example",
		"Access-Control-Request-Method", "POST")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("OPTIONS: got %d, want 204", resp.StatusCode)
	}
	h := resp.Header
	if !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") ||
		h.Get("Access-Control-Allow-Origin") != "https://shop.example" ||
		!strings.Contains(h.Get("Link"), `rel="ice-server"`) || h.Get("Accept-Post") != "application/sdp" {
		t.Errorf("OPTIONS headers: %v", h)
	}
}

func TestMediaMute(t *testing.T) {
	e := newMediaEnv(t)
	st := e.createStream("alice")
	path := "/api/streams/" + st.ID + "/media"
	resp, raw := e.do("POST", path, "", map[string]bool{"video_muted": true})
	e.expect(resp, raw, http.StatusUnauthorized, "unauthorized", nil)
	resp, raw = e.do("POST", "/api/streams/"+uuid.NewString()+"/media", e.token(auth.RoleModerator, "mod"), map[string]bool{})
	e.expect(resp, raw, http.StatusNotFound, "not_found", nil)
	resp, raw = e.do("POST", path, e.token(auth.RoleViewer, "v"), map[string]bool{"video_muted": true})
	e.expect(resp, raw, http.StatusForbidden, "forbidden", nil)
	resp, raw = e.do("POST", path, e.token(auth.RoleCreator, "alice"), `{"video_muted": true, "extra": 1}`)
	e.expect(resp, raw, http.StatusBadRequest, "bad_request", nil)
	// null is no object: encoding/json alone would take it for {} (a 200 changing nothing).
	resp, raw = e.do("POST", path, e.token(auth.RoleCreator, "alice"), "null")
	e.expect(resp, raw, http.StatusBadRequest, "bad_request", nil)

	var got struct {
		AudioMuted bool `json:"audio_muted"`
		VideoMuted bool `json:"video_muted"`
	}
	resp, raw = e.do("POST", path, e.token(auth.RoleModerator, "mod"), map[string]bool{"video_muted": true})
	e.expect(resp, raw, http.StatusOK, "", &got)
	if got.AudioMuted || !got.VideoMuted {
		t.Errorf("after muting video: got %+v", got)
	}
	resp, raw = e.do("POST", path, e.token(auth.RoleCreator, "alice"), map[string]bool{"audio_muted": true})
	e.expect(resp, raw, http.StatusOK, "", &got)
	if !got.AudioMuted || !got.VideoMuted {
		t.Errorf("after muting audio: got %+v, want both muted", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := e.store.ListAudit(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range list {
		if a.Action == "media" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("got %d media audit entries, want 2", n)
	}
}

// TestSDPBodyRefusals: an SDP body declared over 64 KiB is refused 413 before it is read
// (a client asking "Expect: 100-continue" was answered "100 Continue" and the server
// waited for the whole body), and one with a content coding is 415 naming it (a plain
// offer labelled gzip was taken, 201), as for JSON bodies; no session is made.
func TestSDPBodyRefusals(t *testing.T) {
	e := newMediaEnv(t)
	st := e.createStream("alice")
	owner := e.token(auth.RoleCreator, "alice")
	for _, path := range []string{"/whip/" + st.ID, "/whep/" + st.ID} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/sdp\r\n"+
			"Content-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n", path, owner)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(raw), `"payload_too_large"`) {
			t.Errorf("%s: got %d %s, want 413 payload_too_large at once (no 100 Continue)", path, resp.StatusCode, raw)
		}
		resp, raw = e.sdpReq("POST", path, owner, "application/sdp", sdpOffer(t, strings.HasPrefix(path, "/whip/")), "Content-Encoding", "gzip")
		if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(string(raw), "Content-Encoding gzip") {
			t.Errorf("%s gzip: got %d %s, want 415 naming the coding", path, resp.StatusCode, raw)
		}
	}
	if got := e.streamStatus(st.ID); got != cart.StreamIdle {
		t.Errorf("stream %s after the refusals, want idle", got)
	}
}
