package cart

import (
	"context"
	"testing"
	"time"
)

// TestRedisOriginClockSkew: three nodes on one Redis whose clocks are 30 s apart
// (A right, B 30 s ahead, C 30 s behind) agree on a media origin claim: fresh while it
// is renewed (B, ahead, neither takes it over nor sees it stale), stale once it has
// not been renewed for the lease (C, behind, does not see it fresh). The lease is
// short here (the ttl is the caller's); nodes use 5 s.
func TestRedisOriginClockSkew(t *testing.T) {
	a := openTestRedis(t, testRedisURL)
	open := func() *RedisStore {
		st, err := OpenRedis(context.Background(), testRedisURL, RedisOptions{Prefix: a.prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	b, c := open(), open()
	nowA := time.Now
	nowB := func() time.Time { return time.Now().Add(30 * time.Second) }
	nowC := func() time.Time { return time.Now().Add(-30 * time.Second) }
	const lease = 500 * time.Millisecond
	e := &env{st: a, ctx: context.Background(), now: time.Now().UTC(), putIn: map[string]int{}}
	sid := e.stream(t)
	fresh := func(st *RedisStore, now func() time.Time) bool {
		t.Helper()
		o, err := st.MediaOrigin(e.ctx, sid, now())
		if err != nil || o.NodeID != "node-a" {
			t.Fatalf("MediaOrigin: got %+v %v, want node-a's", o, err)
		}
		return o.Seen.After(now().Add(-lease))
	}

	oa := MediaOrigin{NodeID: "node-a", URL: "http://127.0.0.1:9", Session: "sa"}
	if err := a.ClaimMediaOrigin(e.ctx, sid, oa, nowA(), lease); err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct {
		name string
		st   *RedisStore
		now  func() time.Time
	}{{"A", a, nowA}, {"B (30 s ahead)", b, nowB}, {"C (30 s behind)", c, nowC}} {
		if !fresh(n.st, n.now) {
			t.Errorf("node %s: A's claim just made is stale, want fresh", n.name)
		}
	}
	ob := MediaOrigin{NodeID: "node-b", URL: "http://127.0.0.1:10", Session: "sb"}
	err := b.ClaimMediaOrigin(e.ctx, sid, ob, nowB(), lease)
	wantErr(t, "B's claim (30 s ahead) over A's fresh one", err, ErrConflict)

	// A keeps renewing past the lease: still A's, fresh for all.
	for range 3 {
		time.Sleep(lease / 4)
		if ok, err := a.RenewMediaOrigin(e.ctx, sid, "sa", nowA()); err != nil || !ok {
			t.Fatalf("A's renewal: got %v %v, want renewed", ok, err)
		}
	}
	if !fresh(b, nowB) {
		t.Errorf("node B (30 s ahead): A's renewed claim is stale, want fresh")
	}

	// A dies: after the lease its claim is stale for every node, and B may take over.
	time.Sleep(lease + lease/2)
	if fresh(c, nowC) {
		t.Errorf("node C (30 s behind): A's claim not renewed for %v is fresh, want stale", lease+lease/2)
	}
	if fresh(a, nowA) {
		t.Errorf("node A: its claim not renewed for %v is fresh, want stale", lease+lease/2)
	}
	if err := b.ClaimMediaOrigin(e.ctx, sid, ob, nowB(), lease); err != nil {
		t.Errorf("B's claim over A's stale one: got %v, want it taken", err)
	}
}
