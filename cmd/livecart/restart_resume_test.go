package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/livecart/livecart/web/auth"
)

// runMainUntil runs a real Main with cfg until stop is called (runMain) and returns its
// base URL.
func runMainUntil(t *testing.T, name string, cfg Config) (base string, stop func()) {
	t.Helper()
	m, stop := runMain(t, name, cfg)
	return "http://" + m.Addr(), stop
}

// TestResumeAfterRestartEmbedded: a single node on the embedded store restarts; a viewer
// of before the restart resumes with the seq it had applied (as the pages do) and must
// get the stream as it is now. The seq of the stream's events starts again at 0 after a
// restart, so that viewer's seq named other events of the new process: it got the
// events after them (missing the sale and the unpin made since) or, at the same seq,
// nothing, and kept showing a pin that was gone and no sale.
func TestResumeAfterRestartEmbedded(t *testing.T) {
	cfg := testConfig(t)
	cfg.Auth.Secret = "restart-resume-secret-0123456789"
	a := auth.New([]byte(cfg.Auth.Secret), nil)
	creator, err := a.Mint(auth.Identity{UserID: "cleo", Name: "Cleo", Role: auth.RoleCreator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	base, stop := runMainUntil(t, "before the restart", cfg)
	var st, p struct{ ID string }
	call(t, "POST", base+"/api/streams", creator, map[string]string{"title": "restart"}, 201, &st)
	call(t, "POST", base+"/api/streams/"+st.ID+"/products", creator, map[string]any{
		"sku": "s", "title": "Shoe", "price_cents": 1000, "currency": "USD", "stock": 50}, 201, &p)
	c := dialWS(t, base, st.ID, "")
	next(t, c, "snapshot")
	call(t, "POST", base+"/api/streams/"+st.ID+"/pins", creator, map[string]string{"product_id": p.ID}, 200, nil)
	seq := next(t, c, "pin").Seq // the viewer applied every event up to the pin
	c.Close()
	stop()

	// The restarted node: a sale is created and the product unpinned, and (whatever
	// other events there are) at least as many events as the viewer had.
	base, _ = runMainUntil(t, "after the restart", cfg)
	var sale struct{ ID string }
	call(t, "POST", base+"/api/streams/"+st.ID+"/sales", creator, map[string]any{
		"product_id": p.ID, "price_cents": 500, "quantity": 10, "duration_s": 300}, 201, &sale)
	call(t, "DELETE", base+"/api/streams/"+st.ID+"/pins/"+p.ID, creator, nil, 200, nil)
	for i := 0; i < int(seq); i++ { // viewers come and go: viewers events
		w := dialWS(t, base, st.ID, "")
		next(t, w, "snapshot")
		w.Close()
	}

	old := dialWSURL(t, strings.Replace(base, "http://", "ws://", 1)+"/ws/"+st.ID+"?since="+strconv.FormatInt(seq, 10))
	old.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, raw, err := old.ReadMessage()
	if err != nil {
		t.Fatalf("resuming with since=%d after the restart: got no frame (%v), want a snapshot with the sale and no pin", seq, err)
	}
	var snap struct {
		Type   string
		Pinned []struct{ ID string }
		Sales  []struct{ ID string }
	}
	json.Unmarshal(raw, &snap)
	if snap.Type != "snapshot" || len(snap.Pinned) != 0 || len(snap.Sales) != 1 || snap.Sales[0].ID != sale.ID {
		t.Fatalf("resuming with since=%d after the restart: got %s, want a snapshot with sale %s and no pin", seq, raw, sale.ID)
	}
}

func dialWSURL(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestChatMuteHoldsAfterRestartEmbedded: a mute on the embedded node outlives a restart
// (it was kept in process only: the muted user chatted again after it), and an unmute
// stays lifted.
func TestChatMuteHoldsAfterRestartEmbedded(t *testing.T) {
	cfg := testConfig(t)
	cfg.Auth.Secret = "restart-resume-secret-0123456789"
	a := auth.New([]byte(cfg.Auth.Secret), nil)
	mintAs := func(role auth.Role, user string) string {
		tok, err := a.Mint(auth.Identity{UserID: user, Name: user, Role: role}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	creator, troll, pardoned := mintAs(auth.RoleCreator, "cleo"), mintAs(auth.RoleViewer, "troll"), mintAs(auth.RoleViewer, "pardoned")

	base, stop := runMainUntil(t, "before the restart", cfg)
	var st struct{ ID string }
	call(t, "POST", base+"/api/streams", creator, map[string]string{"title": "mutes"}, 201, &st)
	for _, u := range []string{"troll", "pardoned"} {
		call(t, "POST", base+"/api/streams/"+st.ID+"/mutes", creator, map[string]any{"user_id": u, "duration_s": 600}, 201, nil)
	}
	call(t, "DELETE", base+"/api/streams/"+st.ID+"/mutes/pardoned", creator, nil, 204, nil)
	stop()

	base, _ = runMainUntil(t, "after the restart", cfg)
	for _, tc := range []struct {
		token, want string
	}{{troll, "error"}, {pardoned, "chat"}} {
		c := dialWS(t, base, st.ID, tc.token)
		next(t, c, "snapshot")
		if err := c.WriteJSON(map[string]string{"type": "chat", "text": "hello again"}); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			var f struct{ Type, Code, Text string }
			if err := c.ReadJSON(&f); err != nil {
				t.Fatalf("waiting for the answer to a chat message: %v", err)
			}
			if f.Type == "error" || f.Type == "chat" {
				if f.Type != tc.want || (f.Type == "error" && f.Code != "muted") {
					t.Fatalf("chat after the restart: got %s %q %q, want %s (muted for the muted user)", f.Type, f.Code, f.Text, tc.want)
				}
				break
			}
		}
		c.Close()
	}
}
