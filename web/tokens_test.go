package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/livecart/livecart/web/auth"
)

// TestTokenControlCharacters: a user id is any string up to 128 characters (API.md), so
// a token whose sub holds control characters is good, on the REST API and the websocket
// alike, its id kept as it is in chat events; a name claim's control characters never
// reach the chat event's name (line breaks and tabs become spaces, the others are
// dropped); a moderator mutes and unmutes such a user by that id, and the mute holds.
func TestTokenControlCharacters(t *testing.T) {
	e := newLiveEnv(t)
	st := e.createStream("creator-1")
	sign := func(c jwt.MapClaims) string {
		c["exp"] = time.Now().Add(time.Hour).Unix()
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte("test-secret-0123456789"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, sub := range []string{"eve\x1b[2J", "eve\x00", "eve\nadmin", "eve\u009b"} {
		tok := sign(jwt.MapClaims{"sub": sub, "name": "Eve", "role": "viewer"})
		resp, raw := e.do("GET", "/api/cart", tok, nil)
		e.expect(resp, raw, http.StatusOK, "", nil)
		resp, raw = e.do("GET", "/ws/"+st.ID+"?token="+url.QueryEscape(tok), "", nil)
		if resp.StatusCode == http.StatusUnauthorized {
			t.Errorf("sub %q: websocket 401 %s, want the token taken", sub, raw)
		}
	}

	watcher := e.dialWS(st.ID, "")
	readFrame(t, watcher)
	const sub = "eve\x1b[2J"
	eve := e.dialWS(st.ID, sign(jwt.MapClaims{"sub": sub, "name": "Eve\x1b[2J\x07\r\nthe\tGreat\u0085", "role": "viewer"}))
	readFrame(t, eve)
	say := func(text string) {
		if err := eve.WriteJSON(map[string]string{"type": "chat", "text": text}); err != nil {
			t.Fatal(err)
		}
	}
	say("hi")
	var chat struct {
		Type, Name, Text string
		UserID           string `json:"user_id"`
	}
	for chat.Type != "chat" {
		watcher.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := watcher.ReadJSON(&chat); err != nil {
			t.Fatalf("read: %v", err)
		}
	}
	if want := "Eve[2J  the Great"; chat.Name != want || chat.Text != "hi" || chat.UserID != sub {
		t.Errorf("chat event: got user %q name %q text %q, want user %q name %q text hi", chat.UserID, chat.Name, chat.Text, sub, want)
	}

	mod := e.token(auth.RoleModerator, "mod-1")
	resp, raw := e.do("POST", "/api/streams/"+st.ID+"/mutes", mod, map[string]any{"user_id": sub, "duration_s": 60})
	e.expect(resp, raw, http.StatusCreated, "", nil)
	// Muted: eve's next message is refused to her and reaches no one.
	say("still here")
	var ans struct{ Type, Code, Text string }
	for ans.Type != "error" {
		eve.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := eve.ReadJSON(&ans); err != nil {
			t.Fatalf("read eve: %v", err)
		}
		if ans.Type == "chat" && ans.Text == "still here" {
			t.Fatalf("a muted user's message was sent")
		}
	}
	resp, raw = e.do("DELETE", "/api/streams/"+st.ID+"/mutes/"+url.PathEscape(sub), mod, nil)
	e.expect(resp, raw, http.StatusNoContent, "", nil)
}

// TestNameBoundedInChat: a token's name claim is bounded by nothing but the size of a
// request's header (here net/http's default, 1 MiB: a bigger token is answered 431
// before livecart sees it; the livecart binary's bound is 64 KiB, see
// TestRequestHeadersBounded), so a name of 700,000 characters came with a good token and went, whole, to
// every viewer in each chat event its holder sent. The name shown is now at most
// auth.MaxNameLen characters; the token stays good (REST and websocket) and the chat
// event is a few hundred bytes.
func TestNameBoundedInChat(t *testing.T) {
	e := newLiveEnv(t)
	st := e.createStream("creator-1")
	sign := func(name string) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": "eve", "name": name, "role": "viewer", "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString([]byte("test-secret-0123456789"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	huge := sign(strings.Repeat("Eve the Great ", 50000)) // 700,000 characters
	resp, raw := e.do("GET", "/api/cart", huge, nil)
	e.expect(resp, raw, http.StatusOK, "", nil)
	// Over net/http's bound the token never reaches livecart.
	resp, _ = e.do("GET", "/api/cart", sign(strings.Repeat("x", 1<<20)), nil)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a token of over 1 MiB: got %d, want 431 from net/http", resp.StatusCode)
	}

	watcher := e.dialWS(st.ID, "")
	readFrame(t, watcher)
	eve := e.dialWS(st.ID, url.QueryEscape(huge))
	readFrame(t, eve)
	if err := eve.WriteJSON(map[string]string{"type": "chat", "text": "hi"}); err != nil {
		t.Fatal(err)
	}
	var chat struct{ Type, Name, Text string }
	var frame []byte
	for chat.Type != "chat" {
		watcher.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := watcher.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		frame = b
		if err := json.Unmarshal(b, &chat); err != nil {
			t.Fatalf("frame %.200q: %v", b, err)
		}
	}
	if want := strings.Repeat("Eve the Great ", 4) + "Eve the…"; chat.Name != want || chat.Text != "hi" {
		t.Errorf("chat event: got name %q text %q, want name %q text hi", chat.Name, chat.Text, want)
	}
	if n := utf8.RuneCountInString(chat.Name); n > auth.MaxNameLen {
		t.Errorf("chat event's name: %d characters, want at most %d", n, auth.MaxNameLen)
	}
	if len(frame) > 512 {
		t.Errorf("chat event of %d bytes, want a few hundred", len(frame))
	}
}
