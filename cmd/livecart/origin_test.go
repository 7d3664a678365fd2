package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/stream/rtctest"
	"github.com/livecart/livecart/web/auth"
)

// TestEmbeddedNodeKeepsNoOrigin: with the embedded store there is one node, and the
// media origin claims of the cascade have no use. A claim left by the node's previous
// process (crashed a moment ago; the default node id holds the pid) does not refuse
// the publisher coming back, and a live publisher does not renew a claim every second
// (each would be a write with an fsync).
func TestEmbeddedNodeKeepsNoOrigin(t *testing.T) {
	cfg := testConfig(t)
	ctx := context.Background()
	st := cart.Stream{ID: uuid.NewString(), Title: "single", CreatorID: "alice", Status: cart.StreamIdle,
		StreamKey: "sk_" + uuid.NewString(), CreatedAt: time.Now().UTC()}
	left := cart.MediaOrigin{NodeID: "host-4242", URL: "http://127.0.0.1:9", Session: "before-the-crash"}
	func() {
		db, err := cart.OpenBolt(filepath.Join(cfg.DataDir, "livecart.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.CreateStream(ctx, st); err != nil {
			t.Fatal(err)
		}
		if err := db.ClaimMediaOrigin(ctx, st.ID, left, time.Now(), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}()
	m := startMain(t, "node", cfg)
	base := "http://" + m.Addr()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	c := &muteCluster{a: base, sid: st.ID, creator: st.StreamKey, api: api}
	c.publishAt(t, base) // fails on a 409
	before, err := m.store.MediaOrigin(ctx, st.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	after, err := m.store.MediaOrigin(ctx, st.ID, time.Now())
	if err != nil || after.Session != left.Session || !after.Seen.Equal(before.Seen) {
		t.Errorf("stored origin while publishing 1.5 s: got %+v %v, want the old claim %+v untouched (no claim, no renewals)",
			after, err, before)
	}
}

// outageCluster is two nodes on a private redis-server (on port) and a stream
// published on A and watched on B, B pulling it from A.
func outageCluster(t *testing.T, port int) (*muteCluster, *rtctest.Viewer) {
	t.Helper()
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	node := func(name string) string {
		cfg := redisConfig(t, url, "outage-cascade")
		cfg.NodeID = name
		return "http://" + startMain(t, name, cfg).Addr()
	}
	c := &muteCluster{a: node("node-a"), b: node("node-b"), creator: mint(t, auth.RoleCreator, "alice")}
	var st struct{ ID string }
	call(t, "POST", c.a+"/api/streams", c.creator, map[string]string{"title": "outage"}, 201, &st)
	c.sid = st.ID
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	c.api = api
	c.publishAt(t, c.a)
	v, _ := c.watchAt(t, c.b)
	waitStats(t, v, "media on B from A", gotMedia)
	waitMetrics(t, c.b, map[string]float64{"livecart_media_upstreams": 1})
	return c, v
}

// leastUpstreams samples B's upstreams every 50 ms while during runs (closing an
// upstream and pulling again takes a second at least: the retry interval) and returns
// the least value seen.
func leastUpstreams(t *testing.T, base string, during func()) float64 {
	t.Helper()
	stop := make(chan struct{})
	least := make(chan float64, 1)
	go func() {
		l := 1.0
		for {
			select {
			case <-stop:
				least <- l
				return
			case <-time.After(50 * time.Millisecond):
			}
			if got := metric(t, base, "livecart_media_upstreams"); got < l {
				l = got
			}
		}
	}()
	during()
	close(stop)
	return <-least
}

// afterOutage: A still has its publisher and B's viewer still gets media. On a
// failure it logs both nodes' media metrics: whether B's upstream or A's publisher
// went, or a relay dropped packets as late (stream/lag.go).
func afterOutage(t *testing.T, c *muteCluster, v *rtctest.Viewer) {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Logf("after the outage: A %s; B %s", mediaMetrics(c.a), mediaMetrics(c.b))
		}
	}()
	if got := metric(t, c.a, "livecart_media_publishers"); got != 1 {
		t.Errorf("publishers on A after the outage: got %v, want 1", got)
	}
	before := v.Stats()
	waitStats(t, v, "media on B after the outage", func(s rtctest.ViewerStats) bool {
		return s.Video.Packets > before.Video.Packets+20 && s.Audio.Packets > before.Audio.Packets+20
	})
}

// TestCascadeThroughRedisOutage: Redis is down longer than a claim's lease (5 s) while
// a stream is published on A and watched on B: A keeps its publisher, B its upstream.
func TestCascadeThroughRedisOutage(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	port := freeTCPPort(t)
	start, kill := privateRedis(t, port)
	c, v := outageCluster(t, port)
	least := leastUpstreams(t, c.b, func() {
		kill()
		time.Sleep(6 * time.Second)
		start()
		time.Sleep(3 * time.Second)
	})
	if least != 1 {
		t.Errorf("B's upstreams through the outage: went down to %v, want 1 all along", least)
	}
	afterOutage(t, c, v)
}

// TestCascadeThroughRedisWriteStall: Redis takes no writes for 6 s (as during a
// failover: CLIENT PAUSE WRITE) while reads go on. A cannot renew its claim, which
// looks stale to B after 5 s; A is not gone though (its media still flows), and B
// keeps its working upstream instead of closing it and pulling again once A renews.
func TestCascadeThroughRedisWriteStall(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	port := freeTCPPort(t)
	privateRedis(t, port)
	c, v := outageCluster(t, port)
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer rdb.Close()
	least := leastUpstreams(t, c.b, func() {
		if err := rdb.Do(context.Background(), "CLIENT", "PAUSE", "6000", "WRITE").Err(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(9 * time.Second)
	})
	if least != 1 {
		t.Errorf("B's upstreams through the write stall: went down to %v, want 1 all along", least)
	}
	afterOutage(t, c, v)
}

// TestCascadeRacingPublishers: WHIP for one stream on A and on B at the same time.
// Both pass the check for a publisher elsewhere before either has claimed the stream;
// the one that loses the claim is closed, and its WHIP answers 409 conflict, not 201
// for a session that no longer exists. Exactly one publisher is live.
func TestCascadeRacingPublishers(t *testing.T) {
	c := newMuteCluster(t)
	for round := range 6 {
		var st struct{ ID string }
		call(t, "POST", c.a+"/api/streams", c.creator, map[string]string{"title": "race"}, 201, &st)
		c.sid = st.ID
		errs := make(chan error, 2)
		for _, base := range []string{c.a, c.b} {
			pub, err := rtctest.NewPublisher(c.api, rtctest.PublisherOptions{KeyInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				var s session
				signal := signalAt(base, "/whip/"+st.ID, c.creator, &s)
				var answered error // the WHIP's outcome, whatever the peer does next
				errs <- errors.Join(pub.Connect(ctx, func(ctx context.Context, offer string) (string, error) {
					answer, err := signal(ctx, offer)
					answered = err
					return answer, err
				}), answered)
			}()
		}
		created, connected := 0, 0
		for range 2 {
			switch err := <-errs; {
			case err == nil:
				created++
				connected++
			case !strings.Contains(err.Error(), "409"):
				created++ // 201, then a peer that never connects: closed on the server
			}
		}
		if created != 1 || connected != 1 {
			t.Fatalf("round %d: got %d WHIPs answered 201, %d publishers connected; want 1 and 1 (the other WHIP 409)",
				round, created, connected)
		}
	}
}

// TestPublisherLeavesUnderAStaleClaim: the publisher on A leaves while the stream's
// claim is no longer A's but a stale one of a node that is gone (it took the stream
// over, then crashed). Nobody publishes the stream any more: it goes idle.
func TestPublisherLeavesUnderAStaleClaim(t *testing.T) {
	c := newMuteCluster(t)
	stop := c.publishAt(t, c.a)
	st, err := cart.OpenRedis(context.Background(), "redis://127.0.0.1:6379/0", cart.RedisOptions{Prefix: c.prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	status := func() string {
		var s struct{ Status string }
		call(t, "GET", c.b+"/api/streams/"+c.sid, "", nil, 200, &s)
		return s.Status
	}
	deadline := time.Now().Add(5 * time.Second)
	for status() != "live" {
		if time.Now().After(deadline) {
			t.Fatal("stream not live within 5 s of its WHIP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	o, err := st.MediaOrigin(ctx, c.sid, time.Now())
	if err != nil || o.NodeID != "node-a" {
		t.Fatalf("origin while A publishes: got %+v %v, want node-a", o, err)
	}
	if _, err := st.ClearMediaOrigin(ctx, c.sid, o.Session); err != nil {
		t.Fatal(err)
	}
	gone := cart.MediaOrigin{NodeID: "node-gone", URL: "http://127.0.0.1:9", Session: "dead"}
	claimStale(t, st, c.prefix, c.sid, gone)
	stop()
	deadline = time.Now().Add(3 * time.Second)
	for {
		got := status()
		if got == "idle" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status 3 s after the only publisher left: got %s, want idle", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// claimStale records o as the stream's origin in the shared Redis (db 0, key prefix
// prefix) as a node claimed it 6 s ago and never renewed it: the claim, then its
// origin_seen put 6 s back on Redis's clock (the store stamps claims with Redis's
// clock, whatever time the caller gives).
func claimStale(t *testing.T, st *cart.RedisStore, prefix, sid string, o cart.MediaOrigin) {
	t.Helper()
	ctx := context.Background()
	if err := st.ClaimMediaOrigin(ctx, sid, o, time.Now(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	seen := now.Add(-6 * time.Second).UnixMicro()
	if !strings.HasSuffix(prefix, ":") {
		prefix += ":" // as the store does
	}
	if err := rdb.HSet(ctx, prefix+"{"+sid+"}:stream", "origin_seen", fmt.Sprint(seen)).Err(); err != nil {
		t.Fatal(err)
	}
}

// mediaMetrics is base's livecart_media_* metrics on one line, for a failure's log
// (it never fails the test itself).
func mediaMetrics(base string) string {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "livecart_media_"); ok {
			out = append(out, name)
		}
	}
	return strings.Join(out, ", ")
}
