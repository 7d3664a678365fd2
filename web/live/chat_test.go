package live

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/livecart/livecart/cart"
)

func TestChatRules(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	ts := newTestServer(t, Config{Now: clk.Now, ViewersInterval: time.Hour})
	alice := ts.dial(t, sid, "user=alice&name=Alice")
	alice.next(t)
	watcher := ts.dial(t, sid, "")
	watcher.next(t)

	tests := []struct {
		name     string
		from     *client
		frame    any
		wantType string
		wantCode string
		wantMsg  string // a part of the error's message ("" = any)
	}{
		{"anonymous", watcher, map[string]string{"type": "chat", "text": "hi"}, "error", "unauthorized", ""},
		{"empty", alice, map[string]string{"type": "chat", "text": "  "}, "error", "bad_request", ""},
		{"too long", alice, map[string]string{"type": "chat", "text": strings.Repeat("é", 501)}, "error", "bad_request", ""},
		{"unknown type", alice, map[string]string{"type": "dance"}, "error", "bad_request", ""},
		{"not json", alice, "garbage", "error", "bad_request", "one JSON object"},
		{"text not a string", alice, `{"type":"chat","text":5}`, "error", "bad_request", "field text must be a string"},
		{"type not a string", alice, `{"type":["chat"]}`, "error", "bad_request", "field type must be a string"},
		{"not utf-8", alice, "{\"type\":\"chat\",\"text\":\"bad \xff\xfe here\"}", "error", "bad_request", ""},
		{"lone surrogate escape", alice, `{"type":"chat","text":"bad \ud83d here"}`, "error", "bad_request", ""},
		{"null frame", alice, `null`, "error", "bad_request", "one JSON object"},
		{"null frame with spaces", alice, " null ", "error", "bad_request", "one JSON object"},
		{"control characters", alice, `{"type":"chat","text":"a\u0000b\u001b[2Jc"}`, "error", "bad_request", "control characters"},
		{"bell", alice, `{"type":"chat","text":"ding\u0007"}`, "error", "bad_request", "control characters"},
		{"raw DEL", alice, "{\"type\":\"chat\",\"text\":\"del\x7f\"}", "error", "bad_request", "control characters"},
		{"C1 control", alice, `{"type":"chat","text":"next\u0085line"}`, "error", "bad_request", "control characters"},
		{"ping", watcher, map[string]string{"type": "ping"}, "pong", "", ""},
		{"ping with other fields", watcher, `{"type":"ping","id":7}`, "pong", "", ""},
		{"surrogate pair escape", alice, `{"type":"chat","text":"\ud83d\ude00 \\ud800"}`, "chat", "", ""},
		{"longest", alice, map[string]string{"type": "chat", "text": strings.Repeat("é", 500)}, "chat", "", ""},
		{"line break and tab", alice, map[string]string{"type": "chat", "text": "two\nlines\tand a tab"}, "chat", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if s, ok := tc.frame.(string); ok {
				tc.from.ws.WriteMessage(websocket.TextMessage, []byte(s))
			} else {
				tc.from.send(t, tc.frame)
			}
			m := tc.from.next(t)
			if m.Type != tc.wantType || m.Code != tc.wantCode || !strings.Contains(m.Message, tc.wantMsg) {
				t.Fatalf("got %s %q %q, want %s %q %q", m.Type, m.Code, m.Message, tc.wantType, tc.wantCode, tc.wantMsg)
			}
			if tc.wantType != "chat" && m.Seq != 0 {
				t.Errorf("%s carries seq %d, want none", m.Type, m.Seq)
			}
		})
	}
	if m := watcher.nextOf(t, "chat"); m.Text != "\U0001F600 \\ud800" {
		t.Errorf("watcher got a chat %q, want the pair's emoji and the escaped text as sent", m.Text)
	}
	if m := watcher.nextOf(t, "chat"); len([]rune(m.Text)) != 500 {
		t.Errorf("watcher got a chat of %d characters, want 500", len([]rune(m.Text)))
	}
	if m := watcher.nextOf(t, "chat"); m.Text != "two\nlines\tand a tab" {
		t.Errorf("watcher got a chat %q, want the line break and tab kept", m.Text)
	}
	alice.ws.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
	if m := alice.next(t); m.Code != "bad_request" {
		t.Errorf("binary frame: got %s %q, want error bad_request", m.Type, m.Code)
	}
}

func TestChatRateLimit(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	ts := newTestServer(t, Config{Now: clk.Now, ViewersInterval: time.Hour})
	bob := ts.dial(t, sid, "user=bob")
	bob.next(t)
	for i := range 5 {
		bob.send(t, map[string]string{"type": "chat", "text": "hi"})
		if m := bob.next(t); m.Type != "chat" {
			t.Fatalf("message %d: got %s %q, want chat", i+1, m.Type, m.Code)
		}
	}
	bob.send(t, map[string]string{"type": "chat", "text": "hi"})
	if m := bob.next(t); m.Code != "rate_limited" {
		t.Fatalf("6th message: got %s %q, want error rate_limited", m.Type, m.Code)
	}
	// The limit is per user, not per connection.
	bob2 := ts.dial(t, sid, "user=bob")
	bob2.next(t)
	bob2.send(t, map[string]string{"type": "chat", "text": "hi"})
	if m := bob2.next(t); m.Code != "rate_limited" {
		t.Fatalf("second connection: got %s %q, want error rate_limited", m.Type, m.Code)
	}
	// It is per stream: bob's limit on another stream is untouched.
	elsewhere := ts.dial(t, "0b8d2a4c-5e6f-4a1b-8c9d-0e1f2a3b4c5d", "user=bob")
	elsewhere.next(t)
	elsewhere.send(t, map[string]string{"type": "chat", "text": "elsewhere"})
	if m := elsewhere.next(t); m.Type != "chat" || m.Text != "elsewhere" {
		t.Fatalf("another stream: got %s %q, want chat elsewhere", m.Type, m.Code)
	}
	clk.Add(time.Second)
	bob.send(t, map[string]string{"type": "chat", "text": "again"})
	if m := bob.nextOf(t, "chat"); m.Text != "again" {
		t.Fatalf("after 1s: got %q, want again", m.Text)
	}
}

func TestMuteAndExpiry(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	// The clock jumps 11 s below: with the default MaxBehind (10 s), a frame still
	// unsent at the jump (the error to carol, under load) made its connection "too
	// slow" and dropped it (1008), ~1 run in 50 under -race.
	ts := newTestServer(t, Config{Now: clk.Now, ViewersInterval: time.Hour, MaxBehind: time.Hour})
	carol := ts.dial(t, sid, "user=carol")
	carol.next(t)
	watcher := ts.dial(t, sid, "")
	watcher.next(t)
	ctx := context.Background()
	if err := ts.hub.Mute(ctx, sid, "carol", clk.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	carol.send(t, map[string]string{"type": "chat", "text": "secret"})
	if m := carol.next(t); m.Code != "muted" {
		t.Fatalf("muted: got %s %q, want error muted", m.Type, m.Code)
	}
	clk.Add(11 * time.Second)
	carol.send(t, map[string]string{"type": "chat", "text": "back"})
	if m := carol.next(t); m.Type != "chat" || m.Text != "back" {
		t.Fatalf("after expiry: got %s %q, want chat back", m.Type, m.Code)
	}
	if m := watcher.next(t); m.Type != "chat" || m.Text != "back" {
		t.Fatalf("watcher: got %s %q, want chat back (never the muted text)", m.Type, m.Text)
	}
	if err := ts.hub.Mute(ctx, sid, "carol", clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := ts.hub.Unmute(ctx, sid, "carol"); err != nil {
		t.Fatal(err)
	}
	carol.send(t, map[string]string{"type": "chat", "text": "free"})
	if m := carol.next(t); m.Type != "chat" {
		t.Fatalf("after unmute: got %s %q, want chat", m.Type, m.Code)
	}
}

func TestOversizedFrameCloses1009(t *testing.T) {
	ts := newTestServer(t, Config{ViewersInterval: time.Hour})
	c := ts.dial(t, sid, "user=dave")
	c.next(t)
	// A frame of exactly 4 KiB is read (here a ping padded with spaces) and the
	// connection stays open; one byte more closes it.
	ping := `{"type":"ping"}`
	c.ws.WriteMessage(websocket.TextMessage, []byte(ping+strings.Repeat(" ", MaxClientFrame-len(ping))))
	if m := c.next(t); m.Type != EventPong {
		t.Fatalf("frame of %d bytes: got %s %q, want pong", MaxClientFrame, m.Type, m.Code)
	}
	c.ws.WriteMessage(websocket.TextMessage, []byte(ping+strings.Repeat(" ", MaxClientFrame+1-len(ping))))
	if code := c.waitClosed(t); code != websocket.CloseMessageTooBig {
		t.Fatalf("frame of %d bytes: close code got %d, want 1009", MaxClientFrame+1, code)
	}
	c = ts.dial(t, sid, "user=dave")
	c.next(t)
	c.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"chat","text":"`+strings.Repeat("a", MaxClientFrame)+`"}`))
	if code := c.waitClosed(t); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code: got %d, want 1009", code)
	}
}

func TestStockCoalesced(t *testing.T) {
	ts := newTestServer(t, Config{ViewersInterval: time.Hour})
	c := ts.dial(t, sid, "")
	c.next(t)
	const saleID = "s1"
	start := time.Now()
	for i := 1000; i >= 0; i-- { // 1,001 updates over about 0.5 s
		ts.hub.Emit(context.Background(), cart.Event{StreamID: sid, Type: cart.EventStock, Data: cart.StockData{SaleID: saleID, Remaining: i}})
		if i%2 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	var got []msg
	for {
		m := c.next(t)
		got = append(got, m)
		if m.Remain == 0 {
			break
		}
	}
	elapsed := time.Since(start)
	if max := int(elapsed/(100*time.Millisecond)) + 2; len(got) > max {
		t.Errorf("got %d stock events in %v, want at most %d", len(got), elapsed, max)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Remain >= got[i-1].Remain {
			t.Errorf("stock went from %d to %d: not newest first", got[i-1].Remain, got[i].Remain)
		}
		t0, _ := time.Parse(time.RFC3339Nano, got[i-1].TS)
		t1, _ := time.Parse(time.RFC3339Nano, got[i].TS)
		if d := t1.Sub(t0); d < 90*time.Millisecond {
			t.Errorf("two stock events published %v apart, want ≥ 100ms", d)
		}
	}
}

func TestViewersAnnounced(t *testing.T) {
	ts := newTestServer(t, Config{ViewersInterval: 200 * time.Millisecond})
	a := ts.dial(t, sid, "")
	if m := a.next(t); m.Viewers != 1 {
		t.Fatalf("snapshot viewers: got %d, want 1", m.Viewers)
	}
	b := ts.dial(t, sid, "")
	if m := b.next(t); m.Viewers != 2 {
		t.Fatalf("snapshot viewers: got %d, want 2", m.Viewers)
	}
	deadline := time.After(3 * time.Second)
	for {
		select {
		case m := <-a.msgs:
			if m.Type == EventViewers && m.Count == 2 {
				if got := ts.hub.Viewers(context.Background(), sid); got != 2 {
					t.Fatalf("Viewers: got %d, want 2", got)
				}
				return
			}
		case <-deadline:
			t.Fatal("no viewers event with count 2")
		}
	}
}
