package live

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// chatNode is one node of the live channel on the shared Redis (keys under prefix),
// with cfg's chat limit.
func chatNode(t *testing.T, prefix string, cfg Config) *testServer {
	t.Helper()
	name := "livetest-chat-" + uuid.NewString()[:6]
	rdb, _ := testRedis(t, name)
	bus := NewRedisBus(rdb, prefix, nil, nil)
	t.Cleanup(func() { bus.Close() })
	cfg.Bus, cfg.Presence, cfg.ViewersInterval = bus, NewRedisPresence(rdb, prefix, name, nil), time.Hour
	return newTestServer(t, cfg)
}

// chatOnce sends text as a chat message from c and returns what answers it: the chat
// event carrying text, or an error event (other chat events are skipped).
func chatOnce(t *testing.T, c *client, text string) msg {
	t.Helper()
	c.send(t, map[string]string{"type": "chat", "text": text})
	for {
		m := c.next(t)
		if m.Type == EventError || m.Type == EventChat && m.Text == text {
			return m
		}
	}
}

// wantChat fails the test unless text sent from c is chatted (want "") or refused
// with the error code want.
// wantChatsAlternating sends n messages (prefix + 0, 1, ...) through a and b in turn
// and wants each one chatted.
func wantChatsAlternating(t *testing.T, a, b *client, prefix string, n int) {
	t.Helper()
	for i := range n {
		c := a
		if i%2 == 1 {
			c = b
		}
		wantChat(t, c, fmt.Sprint(prefix, i), "")
	}
}

func wantChat(t *testing.T, c *client, text, want string) {
	t.Helper()
	m := chatOnce(t, c, text)
	got := m.Code
	if m.Type == EventChat {
		got = ""
	}
	if got != want {
		t.Fatalf("chat %q: got %s %q, want %q (\"\" = chatted)", text, m.Type, m.Code, want)
	}
}

// TestChatLimitHoldsAcrossNodes: a user connected to two nodes on one Redis gets the
// chat limit once, not once per node (5 at once, then rate_limited on either node;
// each node allowed 5 of its own). The limit is per stream; a muted message takes
// nothing from it; its key expires once the limit is full again.
func TestChatLimitHoldsAcrossNodes(t *testing.T) {
	rdb, prefix := testRedis(t, "livetest")
	cleanupPrefix(t, rdb, prefix)
	// One message in 10 s: no room comes back while the test runs, however slow.
	cfg := Config{ChatRate: 0.1, ChatBurst: 5}
	a, b := chatNode(t, prefix, cfg), chatNode(t, prefix, cfg)
	s1, s2 := uuid.NewString(), uuid.NewString()
	bobA, bobB := a.dial(t, s1, "user=bob"), b.dial(t, s1, "user=bob")
	bobA.nextOf(t, EventSnapshot)
	bobB.nextOf(t, EventSnapshot)
	wantChatsAlternating(t, bobA, bobB, "m", 5)
	wantChat(t, bobB, "m5", "rate_limited")
	wantChat(t, bobA, "m6", "rate_limited")

	key := prefix + ":live:{" + s1 + "}:chat:bob"
	if ttl, err := rdb.PTTL(context.Background(), key).Result(); err != nil || ttl <= 0 || ttl > 50*time.Second+time.Millisecond {
		t.Fatalf("limit key %s: PTTL %v %v, want within 5 × 10 s (full again then)", key, ttl, err)
	}

	// Per stream: bob's limit on another stream is untouched.
	other := b.dial(t, s2, "user=bob")
	other.nextOf(t, EventSnapshot)
	wantChat(t, other, "elsewhere", "")

	// Muted messages take nothing: after the mute, carol still has her 5.
	carolA, carolB := a.dial(t, s1, "user=carol"), b.dial(t, s1, "user=carol")
	carolA.nextOf(t, EventSnapshot)
	carolB.nextOf(t, EventSnapshot)
	ctx := context.Background()
	if err := a.hub.Mute(ctx, s1, "carol", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		wantChat(t, carolB, fmt.Sprint("hush", i), "muted")
	}
	if err := b.hub.Unmute(ctx, s1, "carol"); err != nil {
		t.Fatal(err)
	}
	wantChatsAlternating(t, carolA, carolB, "c", 5)
	wantChat(t, carolB, "c5", "rate_limited")
}

// TestChatLimitRefillsAcrossNodes: room comes back at the limit's rate, whichever node
// took it (5 a second, burst 2: refused, then allowed again 250 ms later).
func TestChatLimitRefillsAcrossNodes(t *testing.T) {
	rdb, prefix := testRedis(t, "livetest")
	cleanupPrefix(t, rdb, prefix)
	cfg := Config{ChatRate: 5, ChatBurst: 2}
	a, b := chatNode(t, prefix, cfg), chatNode(t, prefix, cfg)
	s := uuid.NewString()
	cs := []*client{a.dial(t, s, "user=erin"), b.dial(t, s, "user=erin")}
	for _, c := range cs {
		c.nextOf(t, EventSnapshot)
	}
	sent := 0
	for i := 0; ; i++ {
		if i == 50 {
			t.Fatalf("50 messages at once and none refused (5 a second, burst 2)")
		}
		m := chatOnce(t, cs[i%2], fmt.Sprint("e", i))
		if m.Type == EventChat {
			sent++
			continue
		}
		if m.Code != "rate_limited" {
			t.Fatalf("message %d: got %s %q, want chat or rate_limited", i, m.Type, m.Code)
		}
		if sent < 2 {
			t.Fatalf("refused after %d messages, want the burst of 2 first", sent)
		}
		break
	}
	time.Sleep(250 * time.Millisecond) // a message's room is back after 200 ms
	wantChat(t, cs[0], "after", "")
}

// TestChatLimitFallsBackToTheNodesOwn: when the shared limit's script fails while
// Redis answers (here its key holds a hash), chat goes on under each node's own limit
// (5 on each node, then rate_limited) and mutes still hold; it does not stop.
func TestChatLimitFallsBackToTheNodesOwn(t *testing.T) {
	rdb, prefix := testRedis(t, "livetest")
	cleanupPrefix(t, rdb, prefix)
	cfg := Config{ChatRate: 0.1, ChatBurst: 5}
	a, b := chatNode(t, prefix, cfg), chatNode(t, prefix, cfg)
	s := uuid.NewString()
	ctx := context.Background()
	if err := rdb.HSet(ctx, prefix+":live:{"+s+"}:chat:dave", "x", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := a.hub.cfg.Bus.(ChatGate).ChatCheck(ctx, s, "dave", 1, 5); err == nil {
		t.Fatal("ChatCheck with the limit's key a hash: got no error, want the script's")
	}
	for _, node := range []*testServer{a, b} {
		c := node.dial(t, s, "user=dave")
		c.nextOf(t, EventSnapshot)
		for i := range 5 {
			wantChat(t, c, fmt.Sprint("d", i), "")
		}
		wantChat(t, c, "d5", "rate_limited")
	}
	fay := a.dial(t, s, "user=fay")
	fay.nextOf(t, EventSnapshot)
	if err := rdb.HSet(ctx, prefix+":live:{"+s+"}:chat:fay", "x", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.hub.Mute(ctx, s, "fay", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantChat(t, fay, "f", "muted")
}

// TestChatThroughARedisOutage: with Redis frozen, a chat message is refused as
// unavailable within the check's bound (2 s), not held for longer; with Redis gone (its
// connection refused), at once; chat works again once Redis is back, without
// waiting for anything but Redis.
func TestChatThroughARedisOutage(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	r, rdb, bus := startHangableBus(t, "chatout")
	ts := newTestServer(t, Config{Bus: bus, Presence: NewRedisPresence(rdb, "chatout", "node-a", nil),
		ViewersInterval: time.Hour, ChatRate: 0.1, ChatBurst: 5})
	s := uuid.NewString()
	c := ts.dial(t, s, "user=gus")
	c.nextOf(t, EventSnapshot)
	wantChat(t, c, "before", "")

	thaw := r.freezeTillThaw(t)
	start := time.Now()
	wantChat(t, c, "frozen", "unavailable")
	if d := time.Since(start); d < chatCheckTimeout-100*time.Millisecond || d > chatCheckTimeout+2*time.Second {
		t.Fatalf("frozen Redis: unavailable after %v, want after the check's bound (%v)", d, chatCheckTimeout)
	}
	thaw()
	wantChat(t, c, "thawed", "")

	// Gone: saved, killed, then started again on its port with what it saved.
	if err := rdb.Save(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	old := r.cmd
	old.Process.Kill()
	old.Wait()
	start = time.Now()
	wantChat(t, c, "gone", "unavailable")
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Redis gone: unavailable after %v, want at once", d)
	}
	r.cmd = exec.Command(old.Path, old.Args[1:]...)
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ping := redis.NewClient(&redis.Options{Addr: r.addr()})
	defer ping.Close()
	for i := 0; ping.Ping(context.Background()).Err() != nil; i++ {
		if i > 200 {
			t.Fatal("redis-server did not come back")
		}
		time.Sleep(25 * time.Millisecond)
	}
	// The first call may meet a pooled connection to the killed server (one try).
	for i := 0; ; i++ {
		m := chatOnce(t, c, fmt.Sprint("back", i))
		if m.Type == EventChat {
			break
		}
		if m.Code != "unavailable" || i == 10 {
			t.Fatalf("Redis back: message %d got %s %q, want chat", i, m.Type, m.Code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The limit still holds (what Redis saved came back): 3 messages chatted so far
	// (the refused ones took nothing), so 2 more at most.
	for i, sent := 0, 3; ; i++ {
		m := chatOnce(t, c, fmt.Sprint("more", i))
		if m.Type == EventChat {
			if sent++; sent > 5 {
				t.Fatalf("%d messages chatted, want the burst of 5 at most", sent)
			}
			continue
		}
		if m.Code != "rate_limited" {
			t.Fatalf("after the outage: got %s %q, want chat or rate_limited", m.Type, m.Code)
		}
		break
	}
}

// BenchmarkChatCheck: a chat message's Redis call on a private redis-server, the
// shared limit's script (ChatCheck, each message allowed: the dearer path) against the
// mute read it replaces (MutedUntil), and the message's publication for scale;
// redis-µs/op is the server's own time per call (INFO commandstats).
func BenchmarkChatCheck(b *testing.B) {
	r := startHangableRedis(b)
	rdb, err := NewRedisClient("redis://" + r.addr() + "/0")
	if err != nil {
		b.Fatal(err)
	}
	defer rdb.Close()
	bus := NewRedisBus(rdb, "bench", nil, nil)
	defer bus.Close()
	ctx := context.Background()
	s := uuid.NewString()
	body, err := encodeBody(time.Now(), ChatData{ID: uuid.NewString(), UserID: "u1", Name: "User One", Text: "is the blue one still there?"})
	if err != nil {
		b.Fatal(err)
	}
	serverUsec := func(cmd string) float64 {
		info, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":"); ok {
				for _, kv := range strings.Split(v, ",") {
					if u, ok := strings.CutPrefix(kv, "usec="); ok {
						f, _ := strconv.ParseFloat(u, 64)
						return f
					}
				}
			}
		}
		return 0
	}
	for _, bc := range []struct {
		name, cmd string
		call      func(i int) error
	}{
		{"gate", "evalsha", func(i int) error {
			_, _, _, err := bus.ChatCheck(ctx, s, strconv.Itoa(i%1000), rate.Inf, 5)
			return err
		}},
		{"mute-read", "get", func(i int) error {
			_, _, err := bus.MutedUntil(ctx, s, strconv.Itoa(i%1000))
			return err
		}},
		// What the chat message's own publication costs, for scale.
		{"publish", "evalsha", func(i int) error {
			_, err := bus.Publish(ctx, s, EventChat, body)
			return err
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rdb.ConfigResetStat(ctx)
			b.ResetTimer()
			for i := range b.N {
				if err := bc.call(i); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(serverUsec(bc.cmd)/float64(b.N), "redis-µs/op")
		})
	}
}
