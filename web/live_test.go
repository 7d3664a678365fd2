package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/live"
)

func newLiveEnv(t *testing.T) *testEnv {
	t.Helper()
	return newTestEnv(t, func(d *Deps) {
		hub := live.NewHub(live.Config{Bus: live.NewMemoryBus(nil, 0), Presence: live.NewMemoryPresence(nil), ViewersInterval: time.Hour})
		t.Cleanup(func() { hub.Close() })
		d.Live, d.Events, d.Presence = hub, hub, hub
	})
}

// wsFrame is a live frame as a client sees it.
type wsFrame struct {
	Type    string          `json:"type"`
	Seq     int64           `json:"seq"`
	Code    string          `json:"code"`
	ID      string          `json:"id"`
	UserID  string          `json:"user_id"`
	Text    string          `json:"text"`
	Until   string          `json:"until"`
	Viewers int             `json:"viewers"`
	Stream  json.RawMessage `json:"stream"`
	Pinned  json.RawMessage `json:"pinned"`
	Sales   json.RawMessage `json:"sales"`
}

func (e *testEnv) dialWS(sid, token string) *websocket.Conn {
	e.t.Helper()
	u := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/ws/" + sid
	if token != "" {
		u += "?token=" + token
	}
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { ws.Close() })
	return ws
}

func readFrame(t *testing.T, ws *websocket.Conn) wsFrame {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	var f wsFrame
	if err := ws.ReadJSON(&f); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return f
}

// readType skips frames of other types (viewers).
func readType(t *testing.T, ws *websocket.Conn, typ string) wsFrame {
	t.Helper()
	for {
		if f := readFrame(t, ws); f.Type == typ {
			return f
		}
	}
}

func TestLiveConnectChecks(t *testing.T) {
	e := newLiveEnv(t)
	st := e.createStream("creator-1")
	for _, tc := range []struct {
		name, path string
		status     int
	}{
		{"unknown stream", "/ws/" + uuid.NewString(), http.StatusNotFound},
		{"not a uuid", "/ws/nope", http.StatusNotFound},
		{"bad token", "/ws/" + st.ID + "?token=garbage", http.StatusUnauthorized},
		{"since not a number", "/ws/" + st.ID + "?since=x", http.StatusBadRequest},
		{"since negative", "/ws/" + st.ID + "?since=-1", http.StatusBadRequest},
		{"since negative beyond 64 bits", "/ws/" + st.ID + "?since=-99999999999999999999", http.StatusBadRequest},
		{"since fractional", "/ws/" + st.ID + "?since=1.5", http.StatusBadRequest},
		{"not a websocket request", "/ws/" + st.ID, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, raw := e.do("GET", tc.path, "", nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d, want %d (%s)", resp.StatusCode, tc.status, raw)
			}
			var body struct {
				Error struct{ Code, Message string }
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" || json.Unmarshal(raw, &body) != nil || body.Error.Code == "" {
				t.Fatalf("got Content-Type %q body %s, want a JSON API error", ct, raw)
			}
		})
	}
	ws := e.dialWS(st.ID, "")
	f := readFrame(t, ws)
	if f.Type != "snapshot" || f.Seq != 0 || f.Viewers != 1 || string(f.Pinned) != "[]" || string(f.Sales) != "[]" {
		t.Fatalf("got %+v, want snapshot seq 0, 1 viewer, empty pinned and sales", f)
	}
	var sv StreamView
	if err := json.Unmarshal(f.Stream, &sv); err != nil || sv.ID != st.ID || sv.StreamKey != "" || sv.Viewers != 1 {
		t.Fatalf("snapshot stream: got %s, want the public view of %s with 1 viewer", f.Stream, st.ID)
	}
}

// TestLiveRefusedUpgradeIsAPIError: a refused upgrade (an Origin not allowed, a request
// that is not a websocket handshake) answers in the API's JSON error shape, not the
// websocket library's plain text.
func TestLiveRefusedUpgradeIsAPIError(t *testing.T) {
	e := newTestEnv(t, func(d *Deps) {
		hub := live.NewHub(live.Config{Bus: live.NewMemoryBus(nil, 0), Presence: live.NewMemoryPresence(nil),
			ViewersInterval: time.Hour, CheckOrigin: live.OriginChecker([]string{"https://shop.example", "HTTPS://App.Example:8443"})})
		t.Cleanup(func() { hub.Close() })
		d.Live, d.Events, d.Presence = hub, hub, hub
	})
	st := e.createStream("creator-1")
	u := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/ws/" + st.ID
	ws, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Origin": {"https://shop.example"}})
	if err != nil {
		t.Fatalf("dial from an allowed origin: %v", err)
	}
	ws.Close()
	// The list in another case than the browser's (lowercase) Origin: allowed, as CORS
	// allows it (it was refused 403).
	ws, _, err = websocket.DefaultDialer.Dial(u, http.Header{"Origin": {"https://app.example:8443"}})
	if err != nil {
		t.Fatalf("dial from an allowed origin listed in capitals: %v", err)
	}
	ws.Close()
	_, resp, err := websocket.DefaultDialer.Dial(u, http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil {
		t.Fatalf("dial from another origin: got err %v, want a refused handshake", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body struct {
		Error struct{ Code, Message string }
	}
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Content-Type") != "application/json" ||
		json.Unmarshal(raw, &body) != nil || body.Error.Code != "forbidden" || body.Error.Message == "" {
		t.Fatalf("dial from another origin: got %d %q %s, want 403 application/json forbidden", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}
}

func TestLiveModerationCheckOrder(t *testing.T) {
	e := newLiveEnv(t)
	st := e.createStream("creator-1")
	mod := e.token(auth.RoleModerator, "mod-1")
	viewer := e.token(auth.RoleViewer, "viewer-1")
	other := e.token(auth.RoleCreator, "creator-2")
	owner := e.token(auth.RoleCreator, "creator-1")
	mutes := "/api/streams/" + st.ID + "/mutes"
	chat := "/api/streams/" + st.ID + "/chat/"
	tests := []struct {
		name, method, path, token string
		body                      any
		status                    int
		code                      string
	}{
		{"mute anonymous", "POST", mutes, "", map[string]any{"user_id": "u", "duration_s": 60}, 401, "unauthorized"},
		{"mute unknown stream", "POST", "/api/streams/" + uuid.NewString() + "/mutes", mod, map[string]any{"user_id": "u", "duration_s": 60}, 404, "not_found"},
		{"mute by viewer", "POST", mutes, viewer, map[string]any{"user_id": "u", "duration_s": 60}, 403, "forbidden"},
		{"mute by another creator", "POST", mutes, other, map[string]any{"user_id": "u", "duration_s": 60}, 403, "forbidden"},
		{"mute too short", "POST", mutes, mod, map[string]any{"user_id": "u", "duration_s": 9}, 400, "bad_request"},
		{"mute too long", "POST", mutes, mod, map[string]any{"user_id": "u", "duration_s": 86401}, 400, "bad_request"},
		{"mute no user", "POST", mutes, mod, map[string]any{"duration_s": 60}, 400, "bad_request"},
		{"mute unknown field", "POST", mutes, mod, map[string]any{"user_id": "u", "duration_s": 60, "x": 1}, 400, "bad_request"},
		{"mute shortest", "POST", mutes, mod, map[string]any{"user_id": "u", "duration_s": 10}, 201, ""},
		{"mute a user id of 128 characters", "POST", mutes, mod, map[string]any{"user_id": strings.Repeat("é", 128), "duration_s": 60}, 201, ""},
		{"mute a user id of 129 characters", "POST", mutes, mod, map[string]any{"user_id": strings.Repeat("é", 129), "duration_s": 60}, 400, "bad_request"},
		{"mute a user id not UTF-8", "POST", mutes, mod, "{\"user_id\":\"u\xff\",\"duration_s\":60}", 400, "bad_request"},
		{"mute a user id of a lone surrogate escape", "POST", mutes, mod, `{"user_id":"u\ud800","duration_s":60}`, 400, "bad_request"},
		{"mute longest by owner", "POST", mutes, owner, map[string]any{"user_id": "u", "duration_s": 86400}, 201, ""},
		{"unmute anonymous", "DELETE", mutes + "/u", "", nil, 401, "unauthorized"},
		{"unmute by viewer", "DELETE", mutes + "/u", viewer, nil, 403, "forbidden"},
		{"unmute", "DELETE", mutes + "/u", mod, nil, 204, ""},
		{"unmute not muted", "DELETE", mutes + "/nobody", mod, nil, 204, ""},
		{"unmute a user id of 128 characters", "DELETE", mutes + "/" + strings.Repeat("é", 128), mod, nil, 204, ""},
		{"unmute a user id of 129 characters", "DELETE", mutes + "/" + strings.Repeat("é", 129), mod, nil, 400, "bad_request"},
		{"unmute a user id of 129 characters by viewer", "DELETE", mutes + "/" + strings.Repeat("é", 129), viewer, nil, 403, "forbidden"},
		// No token carries a user id that is not UTF-8 (nothing would be audited with
		// replacement characters in its place).
		{"unmute a user id that is not UTF-8", "DELETE", mutes + "/%FF%FE", mod, nil, 400, "bad_request"},
		{"unmute a user id of an encoded surrogate", "DELETE", mutes + "/u%ED%A0%80", mod, nil, 400, "bad_request"},
		{"unmute a user id not UTF-8 by viewer", "DELETE", mutes + "/u%FF", viewer, nil, 403, "forbidden"},
		{"unmute a user id not UTF-8, unknown stream", "DELETE", "/api/streams/" + uuid.NewString() + "/mutes/u%FF", mod, nil, 404, "not_found"},
		{"unmute a user id of 129 characters, unknown stream", "DELETE", "/api/streams/" + uuid.NewString() + "/mutes/" + strings.Repeat("u", 129), mod, nil, 404, "not_found"},
		{"delete anonymous", "DELETE", chat + uuid.NewString(), "", nil, 401, "unauthorized"},
		{"delete not a uuid", "DELETE", chat + "nope", viewer, nil, 404, "not_found"},
		{"delete by viewer", "DELETE", chat + uuid.NewString(), viewer, nil, 403, "forbidden"},
		{"delete", "DELETE", chat + uuid.NewString(), mod, nil, 204, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			resp, raw := e.do(tc.method, tc.path, tc.token, tc.body)
			e.expect(resp, raw, tc.status, tc.code, nil)
		})
	}
	e.t = t
	var audit []struct{ Action, Target, ActorID string }
	resp, raw := e.do("GET", "/api/streams/"+st.ID+"/audit", mod, nil)
	e.expect(resp, raw, 200, "", &audit)
	var actions []string
	for _, a := range audit {
		actions = append(actions, a.Action)
	}
	if got, want := strings.Join(actions, ","), "mute,mute,mute,unmute,unmute,unmute,chat_delete"; got != want {
		t.Fatalf("audit actions: got %s, want %s", got, want)
	}
}

// TestUnmuteDotUserIDs: "." and ".." are user ids like any other (API.md: any string
// up to 128 characters). A mute of one is lifted through the path's encoded dots
// (/mutes/%2E%2E): it answered 404 "an empty or dot path segment", so the user stayed
// muted until the mute ran out (up to 24 h). A literal dot segment stays 404
// (TestEmptyPathSegmentIsNotFound).
func TestUnmuteDotUserIDs(t *testing.T) {
	e := newLiveEnv(t)
	st := e.createStream("creator-1")
	mod := e.token(auth.RoleModerator, "mod-1")
	watcher := e.dialWS(st.ID, "")
	readFrame(t, watcher)
	for _, c := range []struct{ id, escaped string }{{".", "%2E"}, {"..", "%2e%2E"}} {
		resp, raw := e.do("POST", "/api/streams/"+st.ID+"/mutes", mod, map[string]any{"user_id": c.id, "duration_s": 60})
		e.expect(resp, raw, 201, "", nil)
		ws := e.dialWS(st.ID, e.token(auth.RoleViewer, c.id))
		readFrame(t, ws)
		ws.WriteJSON(map[string]string{"type": "chat", "text": "muted"})
		if f := readType(t, ws, "error"); f.Code != "muted" {
			t.Fatalf("%q muted: got error %q, want muted", c.id, f.Code)
		}
		resp, raw = e.do("DELETE", "/api/streams/"+st.ID+"/mutes/"+c.escaped, mod, nil)
		if resp.StatusCode != 204 {
			t.Fatalf("unmute %q as /mutes/%s: got %d %s, want 204", c.id, c.escaped, resp.StatusCode, raw)
		}
		ws.WriteJSON(map[string]string{"type": "chat", "text": "back"})
		if f := readType(t, watcher, "chat"); f.UserID != c.id || f.Text != "back" {
			t.Fatalf("after unmuting %q the watcher got %+v, want its chat back", c.id, f)
		}
	}
	var audit []struct{ Action, Target string }
	resp, raw := e.do("GET", "/api/streams/"+st.ID+"/audit", mod, nil)
	e.expect(resp, raw, 200, "", &audit)
	var got []string
	for _, a := range audit {
		got = append(got, a.Action+" "+a.Target)
	}
	if want := "mute .,unmute .,mute ..,unmute .."; strings.Join(got, ",") != want {
		t.Fatalf("audit: got %s, want %s", strings.Join(got, ","), want)
	}
}

func TestLiveChatMuteDelete(t *testing.T) {
	e := newLiveEnv(t)
	st := e.createStream("creator-1")
	mod := e.token(auth.RoleModerator, "mod-1")
	alice := e.dialWS(st.ID, e.token(auth.RoleViewer, "alice"))
	readFrame(t, alice)
	watcher := e.dialWS(st.ID, "")
	readFrame(t, watcher)

	alice.WriteJSON(map[string]string{"type": "chat", "text": "hello"})
	msg := readType(t, watcher, "chat")
	if msg.UserID != "alice" || msg.Text != "hello" || uuid.Validate(msg.ID) != nil {
		t.Fatalf("chat: got %+v, want alice's hello with a uuid", msg)
	}
	watcher.WriteJSON(map[string]string{"type": "chat", "text": "me too"})
	if f := readType(t, watcher, "error"); f.Code != "unauthorized" {
		t.Fatalf("anonymous chat: got %q, want unauthorized", f.Code)
	}

	resp, raw := e.do("DELETE", "/api/streams/"+st.ID+"/chat/"+msg.ID, mod, nil)
	e.expect(resp, raw, 204, "", nil)
	if f := readType(t, watcher, "chat_delete"); f.ID != msg.ID {
		t.Fatalf("chat_delete: got id %q, want %q", f.ID, msg.ID)
	}

	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/mutes", mod, map[string]any{"user_id": "alice", "duration_s": 60})
	var muted struct {
		UserID string    `json:"user_id"`
		Until  time.Time `json:"until"`
	}
	e.expect(resp, raw, 201, "", &muted)
	if muted.UserID != "alice" || time.Until(muted.Until) < 50*time.Second {
		t.Fatalf("mute: got %+v, want alice for 60s", muted)
	}
	if f := readType(t, watcher, "mute"); f.UserID != "alice" || f.Until == "" {
		t.Fatalf("mute event: got %+v", f)
	}
	alice.WriteJSON(map[string]string{"type": "chat", "text": "secret"})
	if f := readType(t, alice, "error"); f.Code != "muted" {
		t.Fatalf("muted chat: got %q, want muted", f.Code)
	}
	resp, raw = e.do("DELETE", "/api/streams/"+st.ID+"/mutes/alice", mod, nil)
	e.expect(resp, raw, 204, "", nil)
	alice.WriteJSON(map[string]string{"type": "chat", "text": "back"})
	if f := readType(t, watcher, "chat"); f.Text != "back" {
		t.Fatalf("after unmute the watcher got %q, want back (never the muted text)", f.Text)
	}

	// An announce is text on every viewer's screen, as a chat message: no control
	// characters (line breaks and tabs are fine), and nothing goes out.
	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/announce", mod, map[string]string{"text": "sale\x00\x1b[2J"})
	e.expect(resp, raw, 400, "bad_request", nil)
	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/announce", mod, map[string]string{"text": "flash sale soon"})
	e.expect(resp, raw, 204, "", nil)
	if f := readType(t, watcher, "announce"); f.Text != "flash sale soon" {
		t.Fatalf("announce: got %q", f.Text)
	}

	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/end", mod, nil)
	e.expect(resp, raw, 200, "", nil)
	readType(t, watcher, "stream")
	watcher.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := watcher.ReadMessage()
		if err != nil {
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				t.Fatalf("after end: got %v, want close 1000", err)
			}
			break
		}
	}
}

// auditFirst is the live hub as the server's Events, noting for each moderation event
// whether the store's audit log already held the action when the event went out.
type auditFirst struct {
	cart.Emitter
	store  cart.Store
	mu     sync.Mutex
	missed []string // event types emitted before their audit entry
}

func (a *auditFirst) Emit(ctx context.Context, ev cart.Event) {
	action := map[string]string{live.EventMute: "mute", live.EventChatDelete: "chat_delete"}[ev.Type]
	if action != "" {
		list, err := a.store.ListAudit(ctx, ev.StreamID)
		found := false
		for _, e := range list {
			found = found || e.Action == action
		}
		if err != nil || !found {
			a.mu.Lock()
			a.missed = append(a.missed, ev.Type)
			a.mu.Unlock()
		}
	}
	a.Emitter.Emit(ctx, ev)
}

// TestLiveModerationAuditedBeforeEvent: a mute or a chat deletion is in the audit log
// when its event reaches the viewers: the moderation console reloads the log on the
// event, and found the mute missing from its muted list when the append came after.
func TestLiveModerationAuditedBeforeEvent(t *testing.T) {
	var af *auditFirst
	e := newTestEnv(t, func(d *Deps) {
		hub := live.NewHub(live.Config{Bus: live.NewMemoryBus(nil, 0), Presence: live.NewMemoryPresence(nil), ViewersInterval: time.Hour})
		t.Cleanup(func() { hub.Close() })
		af = &auditFirst{Emitter: hub, store: d.Store}
		d.Live, d.Events, d.Presence = hub, af, hub
	})
	st := e.createStream("creator-1")
	mod := e.token(auth.RoleModerator, "mod-1")
	resp, raw := e.do("POST", "/api/streams/"+st.ID+"/mutes", mod, map[string]any{"user_id": "alice", "duration_s": 60})
	e.expect(resp, raw, http.StatusCreated, "", nil)
	resp, raw = e.do("DELETE", "/api/streams/"+st.ID+"/chat/"+uuid.NewString(), mod, nil)
	e.expect(resp, raw, http.StatusNoContent, "", nil)
	af.mu.Lock()
	defer af.mu.Unlock()
	if len(af.missed) > 0 {
		t.Fatalf("events emitted before their audit entry: %v, want none", af.missed)
	}
}

// frozenRedisHub is a live hub whose bus is a private redis-server (on a free loopback
// port) that the test can freeze (SIGSTOP: connections stay open, nothing is
// answered) and thaw; the test's end thaws and kills it.
type frozenRedisHub struct {
	hub  *live.Hub
	cmd  *exec.Cmd
	once sync.Once
}

func startFrozenRedisHub(t *testing.T, cfg live.Config) *frozenRedisHub {
	t.Helper()
	if sigStop == nil {
		t.Skip("freezing a process needs SIGSTOP")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	f := &frozenRedisHub{cmd: exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", t.TempDir(), "--save", "", "--appendonly", "no")}
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	t.Cleanup(func() {
		f.cmd.Process.Signal(sigCont)
		f.cmd.Process.Kill()
		f.cmd.Wait()
	})
	rdb, err := live.NewRedisClient(fmt.Sprintf("redis://127.0.0.1:%d/0", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	for i := 0; rdb.Ping(context.Background()).Err() != nil; i++ {
		if i > 200 {
			t.Fatal("private redis-server did not answer")
		}
		time.Sleep(25 * time.Millisecond)
	}
	bus := live.NewRedisBus(rdb, "modq", nil, nil)
	t.Cleanup(func() { bus.Close() })
	cfg.Bus, cfg.Presence, cfg.ViewersInterval = bus, live.NewRedisPresence(rdb, "modq", "node-a", nil), time.Hour
	f.hub = live.NewHub(cfg)
	t.Cleanup(func() { f.hub.Close() }) // before the bus and Redis (cleanups run last first)
	return f
}

func (f *frozenRedisHub) freeze(t *testing.T) {
	f.cmd.Process.Signal(sigStop)
	t.Cleanup(f.thaw)
}

func (f *frozenRedisHub) thaw() { f.once.Do(func() { f.cmd.Process.Signal(sigCont) }) }

// fillQueue emits announces to sid while its bus is frozen until the stream's queue
// for the bus refuses one: it is full.
func (f *frozenRedisHub) fillQueue(t *testing.T, sid string) {
	t.Helper()
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		err := f.hub.TryEmit(ctx, cart.Event{StreamID: sid, Type: live.EventAnnounce, Data: live.AnnounceData{Text: fmt.Sprint("fill ", i)}})
		cancel()
		if errors.Is(err, live.ErrBacklog) {
			return
		}
		time.Sleep(5 * time.Millisecond) // the drain takes the first one: in flight
	}
	t.Fatal("the stream's queue for the frozen bus never filled")
}

// auditActions counts the stream's audit entries by action.
func (e *testEnv) auditActions(sid, token string) map[string]int {
	e.t.Helper()
	var list []cart.AuditEntry
	resp, raw := e.do("GET", "/api/streams/"+sid+"/audit", token, nil)
	e.expect(resp, raw, http.StatusOK, "", &list)
	n := map[string]int{}
	for _, a := range list {
		n[a.Action]++
	}
	return n
}

// TestModerationRefusedForBacklogLeavesNoAuditEntry: a stream's events wait for a
// frozen Redis and their queue is full (live.emit_queue_max). An announce, a chat
// deletion and a mute are answered 503 unavailable with Retry-After, and the refused
// deletion and mute leave no audit entry (before: each refused try wrote one that
// said it was done, so the client's retries made several); once Redis answers, the
// retries are done and audited once each. The mutes are kept by a second, in-process
// hub that keeps answering: Redis answering the mute while the stream's queue is
// still full (a Redis slow for the events, not down).
func TestModerationRefusedForBacklogLeavesNoAuditEntry(t *testing.T) {
	f := startFrozenRedisHub(t, live.Config{EmitQueueMax: 1})
	e := newTestEnv(t, func(d *Deps) {
		mutes := live.NewHub(live.Config{Bus: live.NewMemoryBus(nil, 0), Presence: live.NewMemoryPresence(nil), ViewersInterval: time.Hour})
		t.Cleanup(func() { mutes.Close() })
		d.Live, d.Events, d.Presence = mutes, f.hub, mutes
	})
	st := e.createStream("creator-1")
	mod := e.token(auth.RoleModerator, "mod-1")
	msg := uuid.NewString()
	type call struct {
		method, path string
		body         any
		status       int
	}
	calls := []call{
		{"POST", "/api/streams/" + st.ID + "/announce", map[string]string{"text": "hi"}, http.StatusNoContent},
		{"DELETE", "/api/streams/" + st.ID + "/chat/" + msg, nil, http.StatusNoContent},
		{"POST", "/api/streams/" + st.ID + "/mutes", map[string]any{"user_id": "alice", "duration_s": 60}, http.StatusCreated},
	}
	f.freeze(t)
	f.fillQueue(t, st.ID)
	for try := range 2 {
		for _, c := range calls {
			resp, raw := e.do(c.method, c.path, mod, c.body)
			e.expect(resp, raw, http.StatusServiceUnavailable, "unavailable", nil)
			if resp.Header.Get("Retry-After") == "" {
				t.Fatalf("%s %s refused without Retry-After", c.method, c.path)
			}
		}
		if n := e.auditActions(st.ID, mod); n["chat_delete"] != 0 || n["mute"] != 0 {
			t.Fatalf("after %d refused tries the audit log holds %d chat_delete and %d mute entries, want none", try+1, n["chat_delete"], n["mute"])
		}
	}
	f.thaw()
	for _, c := range calls {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			resp, raw := e.do(c.method, c.path, mod, c.body)
			if resp.StatusCode == c.status {
				break
			}
			e.expect(resp, raw, http.StatusServiceUnavailable, "unavailable", nil)
			if time.Now().After(deadline) {
				t.Fatalf("%s %s still refused 10 s after Redis answers again", c.method, c.path)
			}
		}
	}
	if n := e.auditActions(st.ID, mod); n["chat_delete"] != 1 || n["mute"] != 1 {
		t.Fatalf("after the thaw the audit log holds %d chat_delete and %d mute entries, want 1 each", n["chat_delete"], n["mute"])
	}
}
