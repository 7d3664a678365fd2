package web

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/livecart/livecart/web/auth"
)

// TestTokenControlCharacters: a token whose sub holds a control character is no
// token (401, on the REST API and the websocket alike); a name claim's control
// characters never reach the chat event (line breaks and tabs become spaces, the
// others are dropped); a mute's user id with one is no one's (400).
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
		e.expect(resp, raw, http.StatusUnauthorized, "unauthorized", nil)
		resp, raw = e.do("GET", "/ws/"+st.ID+"?token="+url.QueryEscape(tok), "", nil)
		e.expect(resp, raw, http.StatusUnauthorized, "unauthorized", nil)
	}

	watcher := e.dialWS(st.ID, "")
	readFrame(t, watcher)
	eve := e.dialWS(st.ID, sign(jwt.MapClaims{"sub": "eve", "name": "Eve\x1b[2J\x07\r\nthe\tGreat\u0085", "role": "viewer"}))
	readFrame(t, eve)
	if err := eve.WriteJSON(map[string]string{"type": "chat", "text": "hi"}); err != nil {
		t.Fatal(err)
	}
	var chat struct{ Type, UserID, Name, Text string }
	for chat.Type != "chat" {
		watcher.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := watcher.ReadJSON(&chat); err != nil {
			t.Fatalf("read: %v", err)
		}
	}
	if want := "Eve[2J  the Great"; chat.Name != want || chat.Text != "hi" {
		t.Errorf("chat event: got name %q text %q, want name %q text hi", chat.Name, chat.Text, want)
	}

	mod := e.token(auth.RoleModerator, "mod-1")
	resp, raw := e.do("POST", "/api/streams/"+st.ID+"/mutes", mod, map[string]any{"user_id": "eve\x1b", "duration_s": 60})
	e.expect(resp, raw, http.StatusBadRequest, "bad_request", nil)
	resp, raw = e.do("DELETE", "/api/streams/"+st.ID+"/mutes/eve%07", mod, nil)
	e.expect(resp, raw, http.StatusBadRequest, "bad_request", nil)
}
