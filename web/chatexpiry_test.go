package web

import (
	"sync"
	"testing"
	"time"

	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/live"
)

// stepClock is a clock tests move by hand.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestLiveChatAfterTokenExpiry: a viewer's websocket outlives its token. Once the
// token has expired, chat is refused with an error event unauthorized (as for an
// anonymous viewer) while the connection stays open and keeps getting the stream's
// events; before, it kept chatting under the expired identity.
func TestLiveChatAfterTokenExpiry(t *testing.T) {
	clk := &stepClock{t: time.Now()}
	secret := []byte("test-secret-0123456789")
	a := auth.New(secret, clk.Now)
	e := newTestEnv(t, func(d *Deps) {
		// MaxBehind an hour: the clock's jump past the token's expiry must not make a
		// frame still queued from before it (alice's own "before", which she does not
		// read) look two minutes late, which drops her as too slow.
		hub := live.NewHub(live.Config{Now: clk.Now, Bus: live.NewMemoryBus(clk.Now, 0), Presence: live.NewMemoryPresence(clk.Now), ViewersInterval: time.Hour, MaxBehind: time.Hour})
		t.Cleanup(func() { hub.Close() })
		d.Live, d.Events, d.Presence = hub, hub, hub
		d.Auth = a
	})
	st := e.createStream("creator-1")
	short, err := a.Mint(auth.Identity{UserID: "alice", Name: "Alice", Role: auth.RoleViewer}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	long, err := a.Mint(auth.Identity{UserID: "bob", Name: "Bob", Role: auth.RoleViewer}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	alice := e.dialWS(st.ID, short)
	readFrame(t, alice)
	bob := e.dialWS(st.ID, long)
	readFrame(t, bob)

	alice.WriteJSON(map[string]string{"type": "chat", "text": "before"})
	if f := readType(t, bob, "chat"); f.UserID != "alice" || f.Text != "before" {
		t.Fatalf("chat before expiry: got %+v", f)
	}
	clk.Add(2 * time.Minute)
	alice.WriteJSON(map[string]string{"type": "chat", "text": "after"})
	if f := readType(t, alice, "error"); f.Code != "unauthorized" {
		t.Fatalf("chat after the token expired: got %+v, want error unauthorized", f)
	}
	bob.WriteJSON(map[string]string{"type": "chat", "text": "still here"})
	f := readType(t, alice, "chat")
	if f.UserID != "bob" || f.Text != "still here" {
		t.Fatalf("alice after expiry: got %+v, want bob's chat (the connection stays and listens)", f)
	}
	if f := readType(t, bob, "chat"); f.Text != "still here" {
		t.Fatalf("bob got %+v, want his own chat and not alice's refused one", f)
	}
}
