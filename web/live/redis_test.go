package live

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/livecart/livecart/cart"
)

// testRedis connects to the shared Redis on loopback with a client name of its own;
// keys go under a random prefix that is deleted afterwards.
func testRedis(t testing.TB, name string) (*redis.Client, string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ClientName: name})
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		rdb.Close()
		t.Fatalf("no redis at 127.0.0.1:6379 (CI starts one): %v", err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb, "livetest-" + uuid.NewString()[:8]
}

func cleanupPrefix(t testing.TB, rdb *redis.Client, prefix string) {
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
}

// busImpls runs f against every Bus implementation.
func busImpls(t *testing.T, f func(t *testing.T, bus Bus, now *clock)) {
	t.Run("memory", func(t *testing.T) {
		clk := &clock{t: time.Now()}
		f(t, NewMemoryBus(clk.Now, 0), clk)
	})
	t.Run("redis", func(t *testing.T) {
		rdb, prefix := testRedis(t, "livetest")
		cleanupPrefix(t, rdb, prefix)
		clk := &clock{t: time.Now()}
		b := NewRedisBus(rdb, prefix, clk.Now, nil)
		t.Cleanup(func() { b.Close() })
		f(t, b, clk)
	})
}

func TestBusConformance(t *testing.T) {
	busImpls(t, func(t *testing.T, bus Bus, clk *clock) {
		ctx := context.Background()
		sid := uuid.NewString()
		if _, err := bus.Publish(ctx, sid, "a", []byte(`"ts":"x"}`)); err != nil {
			t.Fatal(err)
		}
		got := make(chan Record, 100)
		last, cancel, err := bus.Subscribe(ctx, sid, func(r Record) { got <- r })
		if err != nil {
			t.Fatal(err)
		}
		if last != 1 {
			t.Fatalf("Subscribe: got last %d, want 1", last)
		}
		for i := 2; i <= 5; i++ {
			rec, err := bus.Publish(ctx, sid, "pin", []byte(`"ts":"x","n":`+fmt.Sprint(i)+`}`))
			if err != nil || rec.Seq != int64(i) {
				t.Fatalf("Publish %d: got seq %d err %v", i, rec.Seq, err)
			}
			want := fmt.Sprintf(`{"type":"pin","seq":%d,"ts":"x","n":%d}`, i, i)
			if string(rec.Frame) != want {
				t.Fatalf("frame: got %s, want %s", rec.Frame, want)
			}
		}
		for i := int64(2); i <= 5; i++ {
			select {
			case r := <-got:
				if r.Seq != i {
					t.Fatalf("delivered: got seq %d, want %d", r.Seq, i)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("seq %d not delivered", i)
			}
		}
		cancel()
		for _, tc := range []struct {
			after, through int64
			n              int
			ok             bool
		}{{0, 5, 5, true}, {2, 5, 3, true}, {5, 5, 0, true}, {3, 4, 1, true}} {
			recs, ok, err := bus.Since(ctx, sid, tc.after, tc.through)
			if err != nil || ok != tc.ok || len(recs) != tc.n {
				t.Fatalf("Since(%d,%d): got %d records ok=%v err=%v, want %d ok=%v", tc.after, tc.through, len(recs), ok, err, tc.n, tc.ok)
			}
			for i, r := range recs {
				if r.Seq != tc.after+1+int64(i) {
					t.Fatalf("Since(%d,%d)[%d]: got seq %d", tc.after, tc.through, i, r.Seq)
				}
			}
		}

		// Mutes, with their expiry.
		until := clk.Now().Add(10 * time.Second)
		if err := bus.Mute(ctx, sid, "u1", until); err != nil {
			t.Fatal(err)
		}
		if u, muted, err := bus.MutedUntil(ctx, sid, "u1"); err != nil || !muted || !u.Equal(until.Truncate(time.Millisecond)) && !u.Equal(until) {
			t.Fatalf("MutedUntil: got %v %v %v, want muted until %v", u, muted, err, until)
		}
		if _, muted, err := bus.MutedUntil(ctx, sid, "u2"); err != nil || muted {
			t.Fatalf("u2: got muted %v %v, want not", muted, err)
		}
		clk.Add(11 * time.Second)
		if _, muted, err := bus.MutedUntil(ctx, sid, "u1"); err != nil || muted {
			t.Fatalf("u1 after expiry: got muted %v %v, want not", muted, err)
		}
		if err := bus.Mute(ctx, sid, "u1", clk.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := bus.Unmute(ctx, sid, "u1"); err != nil {
			t.Fatal(err)
		}
		if _, muted, err := bus.MutedUntil(ctx, sid, "u1"); err != nil || muted {
			t.Fatalf("u1 after Unmute: got muted %v %v, want not", muted, err)
		}
	})
}

func TestBusHistoryBounded(t *testing.T) {
	busImpls(t, func(t *testing.T, bus Bus, _ *clock) {
		ctx := context.Background()
		sid := uuid.NewString()
		const n = 2600
		for i := 0; i < n; i++ {
			if _, err := bus.Publish(ctx, sid, "x", []byte(`"ts":"x"}`)); err != nil {
				t.Fatal(err)
			}
		}
		recs, ok, err := bus.Since(ctx, sid, n-HistorySize, n)
		if err != nil || !ok || len(recs) != HistorySize {
			t.Fatalf("last %d: got %d ok=%v err=%v", HistorySize, len(recs), ok, err)
		}
		if _, ok, err := bus.Since(ctx, sid, 0, n); err != nil || ok {
			t.Fatalf("since 0 after %d events: got ok=%v err=%v, want too old", n, ok, err)
		}
	})
}

func TestPresenceConformance(t *testing.T) {
	run := func(t *testing.T, a, b Presence, clk *clock) {
		ctx := context.Background()
		sid := uuid.NewString()
		set := func(p Presence, n int) {
			t.Helper()
			if err := p.SetLocal(ctx, sid, n); err != nil {
				t.Fatalf("SetLocal(%d): %v", n, err)
			}
		}
		announce := func(p Presence, n int) bool {
			t.Helper()
			ok, err := p.Announce(ctx, sid, n, time.Second)
			if err != nil {
				t.Fatalf("Announce(%d): %v", n, err)
			}
			return ok
		}
		set(a, 3)
		set(b, 4)
		want := 7
		if _, ok := a.(*MemoryPresence); ok {
			want = 4 // one node: the last count set
		}
		if n, err := a.Count(ctx, sid); err != nil || n != want {
			t.Fatalf("Count: got %d %v, want %d", n, err, want)
		}
		if !announce(a, 7) {
			t.Fatalf("first Announce: got false, want true")
		}
		if announce(b, 8) {
			t.Fatalf("Announce within the interval: got true, want false")
		}
		clk.Add(1100 * time.Millisecond)
		if announce(b, 7) {
			t.Fatalf("Announce of an unchanged count: got true, want false")
		}
		if !announce(b, 8) {
			t.Fatalf("Announce after the interval: got false, want true")
		}
		// The stream's last viewers leave and one comes back at once: the interval still
		// holds (API.md: viewers events at most once a second, also as a resuming client
		// reads them from the history), and so does the last count announced.
		set(a, 0)
		set(b, 0)
		set(a, 1)
		if announce(a, 1) {
			t.Fatalf("Announce within the interval after the viewers left and came back: got true, want false")
		}
		clk.Add(1100 * time.Millisecond)
		set(a, 0)
		set(a, 8)
		if announce(a, 8) {
			t.Fatalf("Announce of the count last announced, after the viewers left and came back: got true, want false")
		}
		if !announce(a, 1) {
			t.Fatalf("Announce of a new count after the interval: got false, want true")
		}
		if _, ok := a.(*RedisPresence); ok {
			// b stops refreshing (it crashed): its count goes once it has stood the
			// TTL, by Redis's clock (the test's presences stand 1 s).
			time.Sleep(1100 * time.Millisecond)
			set(a, 3)
			if n, err := a.Count(ctx, sid); err != nil || n != 3 {
				t.Fatalf("after b expired: got %d %v, want 3", n, err)
			}
		}
	}
	t.Run("memory", func(t *testing.T) {
		clk := &clock{t: time.Now()}
		p := NewMemoryPresence(clk.Now)
		run(t, p, p, clk)
	})
	t.Run("redis", func(t *testing.T) {
		rdb, prefix := testRedis(t, "livetest")
		cleanupPrefix(t, rdb, prefix)
		clk := &clock{t: time.Now()}
		a, b := NewRedisPresence(rdb, prefix, "a", clk.Now), NewRedisPresence(rdb, prefix, "b", clk.Now)
		a.ttl, b.ttl = time.Second, time.Second
		run(t, a, b, clk)
	})
}

// TestRedisPresenceDeadNodeGoesWhateverItsClock: node b, whose clock is an hour ahead,
// counts 5 viewers, then dies (no refresh). Its count must go once it has stood the
// TTL by Redis's clock, as a node's with the right time does. (Before: its count's
// expiry was b's time + 30 s, compared with a's time: its dead viewers were counted
// for an hour more.)
func TestRedisPresenceDeadNodeGoesWhateverItsClock(t *testing.T) {
	rdb, prefix := testRedis(t, "livetest")
	cleanupPrefix(t, rdb, prefix)
	ctx := context.Background()
	sid := uuid.NewString()
	ahead := func() time.Time { return time.Now().Add(time.Hour) }
	a, b := NewRedisPresence(rdb, prefix, "a", nil), NewRedisPresence(rdb, prefix, "b", ahead)
	a.ttl, b.ttl = time.Second, time.Second
	if err := b.SetLocal(ctx, sid, 5); err != nil {
		t.Fatal(err)
	}
	if err := a.SetLocal(ctx, sid, 3); err != nil {
		t.Fatal(err)
	}
	if n, err := a.Count(ctx, sid); err != nil || n != 8 {
		t.Fatalf("both alive: got %d (%v), want 8", n, err)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := a.SetLocal(ctx, sid, 3); err != nil { // a refreshes; b is dead
		t.Fatal(err)
	}
	if n, err := a.Count(ctx, sid); err != nil || n != 3 {
		t.Fatalf("after b died and its count stood the TTL: got %d (%v), want 3", n, err)
	}
}

// redisNode is one server instance on the shared Redis.
func redisNode(t *testing.T, name, prefix string) (*testServer, *redis.Client) {
	rdb, _ := testRedis(t, name)
	bus := NewRedisBus(rdb, prefix, nil, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	t.Cleanup(func() { bus.Close() })
	ts := newTestServer(t, Config{Bus: bus, Presence: NewRedisPresence(rdb, prefix, name, nil), ViewersInterval: time.Hour})
	return ts, rdb
}

// killPubSub kills the Redis connections named name that are subscribed.
func killPubSub(t *testing.T, rdb *redis.Client, name string) int {
	list, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	sc := bufio.NewScanner(strings.NewReader(list))
	for sc.Scan() {
		f := map[string]string{}
		for _, kv := range strings.Fields(sc.Text()) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if f["name"] == name && f["sub"] != "0" {
			if err := rdb.ClientKillByFilter(context.Background(), "ID", f["id"]).Err(); err != nil {
				t.Fatal(err)
			}
			killed++
		}
	}
	return killed
}

func TestTwoNodesOneRedis(t *testing.T) {
	_, prefix := testRedis(t, "livetest")
	nameA, nameB := "livetest-a-"+uuid.NewString()[:6], "livetest-b-"+uuid.NewString()[:6]
	a, rdbA := redisNode(t, nameA, prefix)
	b, rdbB := redisNode(t, nameB, prefix)
	cleanupPrefix(t, rdbA, prefix)
	sid := uuid.NewString()

	onA := a.dial(t, sid, "")
	onB := b.dial(t, sid, "")
	onA.next(t)
	onB.next(t)
	if n := a.hub.Viewers(context.Background(), sid); n != 2 {
		t.Fatalf("viewers across nodes: got %d, want 2", n)
	}
	const first = 50
	for i := range first {
		announce(a.hub, sid, fmt.Sprint(i))
	}
	for want := int64(1); want <= first; want++ {
		ma, mb := onA.nextOf(t, EventAnnounce), onB.nextOf(t, EventAnnounce)
		if ma.Seq != want || mb.Seq != want || ma.Text != mb.Text {
			t.Fatalf("got A seq %d %q, B seq %d %q, want both seq %d with one text", ma.Seq, ma.Text, mb.Seq, mb.Text, want)
		}
	}

	// Kill B's subscription while A keeps publishing: B's viewer must miss nothing.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			announce(a.hub, sid, fmt.Sprint("k", i))
			time.Sleep(2 * time.Millisecond)
		}
	}()
	time.Sleep(20 * time.Millisecond)
	if n := killPubSub(t, rdbB, nameB); n != 1 {
		t.Fatalf("killed %d subscribed connections of B, want 1", n)
	}
	<-done
	for want := int64(first + 1); want <= first+100; want++ {
		if m := onB.nextOf(t, EventAnnounce); m.Seq != want {
			t.Fatalf("B after kill: got seq %d, want %d", m.Seq, want)
		}
	}
	// And a new viewer on B resumes from the shared history.
	late := b.dial(t, sid, "since=140")
	for want := int64(141); want <= 150; want++ {
		if m := late.next(t); m.Type != EventAnnounce || m.Seq != want {
			t.Fatalf("resume on B: got %s seq %d, want announce %d", m.Type, m.Seq, want)
		}
	}
	// Chat and mutes made on A hold on B.
	if err := a.hub.Mute(context.Background(), sid, "eve", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	eve := b.dial(t, sid, "user=eve")
	eve.next(t)
	eve.send(t, map[string]string{"type": "chat", "text": "hi"})
	if m := eve.nextOf(t, EventError); m.Code != "muted" {
		t.Fatalf("mute across nodes: got %q, want muted", m.Code)
	}
}

func TestRedisBusExpiresEndedStream(t *testing.T) {
	rdb, prefix := testRedis(t, "livetest")
	cleanupPrefix(t, rdb, prefix)
	b := NewRedisBus(rdb, prefix, nil, nil)
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	sid := uuid.NewString()
	if _, err := b.Publish(ctx, sid, "announce", []byte(`"text":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, b.key(sid, "history")).Val(); ttl != -1 {
		t.Fatalf("got history TTL %v on a live stream, want none (-1)", ttl)
	}
	if _, err := b.Publish(ctx, sid, EventStream, []byte(`"stream":{"status":"ended"}}`)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"history", "seq"} {
		ttl := rdb.PTTL(ctx, b.key(sid, k)).Val()
		if ttl <= 0 || ttl > EndedRetention {
			t.Fatalf("got %s TTL %v after the end, want (0, %v]", k, ttl, EndedRetention)
		}
	}
}

// openRedisStore opens a cart store on the test Redis under prefix, emptied at the end.
func openRedisStore(t testing.TB, rdb *redis.Client, prefix string) *cart.RedisStore {
	t.Helper()
	store, err := cart.OpenRedis(context.Background(), "redis://127.0.0.1:6379/0", cart.RedisOptions{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cleanupPrefix(t, rdb, prefix)
	return store
}
