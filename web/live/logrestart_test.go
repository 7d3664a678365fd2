package live

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// TestViewersGetSnapshotAfterRedisLosesItsData: two nodes on a private redis-server,
// a viewer on each, 5 events; then Redis loses every key (FLUSHALL, or a restart
// without persistence) and the stream's seq starts again from 1. Each viewer must get
// a fresh snapshot (its seq that of the new log) and then every new event in order,
// and the node count the restart. (Before: the nodes took the new events, seq 1, 2,
// …, for ones already delivered and dropped them all, silently, until the seq passed
// 5; the viewers got nothing within 5 s.) In "past" the new log has passed the old
// seq by the time the node reads it (a restart, 8 events at once): the event at seq 5
// is another one.
func TestViewersGetSnapshotAfterRedisLosesItsData(t *testing.T) {
	for _, tc := range []struct {
		name    string
		restart bool
		burst   int // new events published right after the loss
	}{
		{"flushall", false, 3},
		{"restart", true, 3},
		{"past", true, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startHangableRedis(t)
			prefix := "logrestart-" + uuid.NewString()[:8]
			a, _ := privateRedisNode(t, r, prefix, "node-a")
			b, regB := privateRedisNode(t, r, prefix, "node-b")
			sid := uuid.NewString()
			viewers := []*client{a.dial(t, sid, ""), b.dial(t, sid, "")}
			for _, v := range viewers {
				if m := v.next(t); m.Type != EventSnapshot || m.Seq != 0 {
					t.Fatalf("first frame: %s seq %d, want snapshot 0", m.Type, m.Seq)
				}
			}
			for i := 1; i <= 5; i++ {
				announce(a.hub, sid, fmt.Sprint("old", i))
			}
			for _, v := range viewers {
				for want := int64(1); want <= 5; want++ {
					if m := v.nextOf(t, EventAnnounce); m.Seq != want {
						t.Fatalf("before: seq %d, want %d", m.Seq, want)
					}
				}
			}

			direct := redis.NewClient(&redis.Options{Addr: r.addr()})
			t.Cleanup(func() { direct.Close() })
			if tc.restart {
				r.restart(t)
			} else if err := direct.FlushAll(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= tc.burst; i++ {
				announce(a.hub, sid, fmt.Sprint("new", i))
			}
			// The snapshot, then the new events after its seq; then more, which must
			// follow it in order.
			for _, v := range viewers {
				snap := v.nextOf(t, EventSnapshot)
				if snap.Seq < 0 || snap.Seq > int64(tc.burst) {
					t.Fatalf("snapshot after the loss at seq %d, want 0..%d (the new log's)", snap.Seq, tc.burst)
				}
				for want := snap.Seq + 1; want <= int64(tc.burst); want++ {
					if m := v.nextOf(t, EventAnnounce); m.Seq != want || m.Text != fmt.Sprint("new", want) {
						t.Fatalf("after the snapshot: seq %d %q, want %d %q", m.Seq, m.Text, want, fmt.Sprint("new", want))
					}
				}
			}
			for i := tc.burst + 1; i <= tc.burst+3; i++ {
				announce(a.hub, sid, fmt.Sprint("new", i))
			}
			for _, v := range viewers {
				for want := int64(tc.burst + 1); want <= int64(tc.burst+3); want++ {
					if m := v.next(t); m.Type != EventAnnounce || m.Seq != want || m.Text != fmt.Sprint("new", want) {
						t.Fatalf("later: %s seq %d %q, want announce %d %q", m.Type, m.Seq, m.Text, want, fmt.Sprint("new", want))
					}
				}
			}
			if n := counterValue(t, regB, "livecart_live_log_restarts_total"); n != 1 {
				t.Fatalf("node B counted %v log restarts, want 1", n)
			}
		})
	}
}

// privateRedisNode is a hub on a RedisBus on r (a client made as the binary makes it).
func privateRedisNode(t *testing.T, r *hangableRedis, prefix, name string) (*testServer, *prometheus.Registry) {
	t.Helper()
	rdb, err := NewRedisClientNamed("redis://"+r.addr()+"/0", name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	bus := NewRedisBus(rdb, prefix, nil, slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", name))
	t.Cleanup(func() { bus.Close() })
	reg := prometheus.NewRegistry()
	ts := newTestServer(t, Config{Bus: bus, Presence: NewMemoryPresence(nil), ViewersInterval: time.Hour, Metrics: reg})
	return ts, reg
}

// counterValue is the value of the counter named name in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}

// TestRedisBusLogRestartedPastDelivered: a node's subscription had delivered seq 5
// when its pub/sub connection dropped; meanwhile Redis lost its data and the new log
// reached seq 8. On resubscribing, the node's catch-up finds another event at seq 5
// (the new log's): its subscriber must get a reset at 8 and then seq 9, not seq 6..8
// of the new log as if they followed the old one (before: it got 6, 7, 8 and 9, and
// missed the new log's 1..5).
func TestRedisBusLogRestartedPastDelivered(t *testing.T) {
	r := startHangableRedis(t)
	prefix := "logrestart-" + uuid.NewString()[:8]
	bus := func(name string) (*RedisBus, *redis.Client) {
		rdb, err := NewRedisClientNamed("redis://"+r.addr()+"/0", name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		b := NewRedisBus(rdb, prefix, nil, slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", name))
		t.Cleanup(func() { b.Close() })
		return b, rdb
	}
	a, _ := bus("bus-a")
	b, rdbB := bus("bus-b")
	ctx := context.Background()
	sid := uuid.NewString()
	got := make(chan Record, 100)
	if _, cancel, err := b.Subscribe(ctx, sid, func(rec Record) { got <- rec }); err != nil {
		t.Fatal(err)
	} else {
		t.Cleanup(cancel)
	}
	pub := func(i int, what string) {
		t.Helper()
		body := fmt.Sprintf(`"ts":"%s","text":"%s%d"}`, time.Now().UTC().Format(time.RFC3339Nano), what, i)
		if _, err := a.Publish(ctx, sid, EventAnnounce, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	next := func() Record {
		t.Helper()
		select {
		case rec := <-got:
			return rec
		case <-time.After(5 * time.Second):
			t.Fatal("no record within 5 s")
		}
		return Record{}
	}
	for i := 1; i <= 5; i++ {
		pub(i, "old")
		if rec := next(); rec.Seq != int64(i) || rec.Reset {
			t.Fatalf("before: %+v, want seq %d", rec, i)
		}
	}
	b.mu.Lock() // the node's delivery waits: it sees none of the new log's messages
	if n := killPubSub(t, rdbB, "bus-b"); n != 1 {
		b.mu.Unlock()
		t.Fatalf("killed %d subscribed connections, want 1", n)
	}
	direct := redis.NewClient(&redis.Options{Addr: r.addr()})
	t.Cleanup(func() { direct.Close() })
	if err := direct.FlushAll(ctx).Err(); err != nil {
		b.mu.Unlock()
		t.Fatal(err)
	}
	for i := 1; i <= 8; i++ {
		pub(i, "new")
	}
	b.mu.Unlock()
	if rec := next(); !rec.Reset || rec.Seq != 8 {
		t.Fatalf("after the loss: %+v, want a reset at 8", rec)
	}
	pub(9, "new")
	if rec := next(); rec.Reset || rec.Seq != 9 || !strings.Contains(string(rec.Frame), `"text":"new9"`) {
		t.Fatalf("then: %+v %s, want seq 9 (new9)", rec, rec.Frame)
	}
}
