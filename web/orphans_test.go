package web

import (
	"context"
	"testing"
	"time"

	"github.com/livecart/livecart/cart"
)

// TestReleaseOrphanedStreams: a live stream whose origin claim went stale is recorded
// idle only when its node is gone (Options.NodeRunning says so), only when the previous
// look found the store answering, and only for the session that is the stream's
// publisher (a publisher that came since keeps it live). A running node's claim may
// just be renewed late (its store calls wait in a sale storm): its stream stays live.
func TestReleaseOrphanedStreams(t *testing.T) {
	running := map[string]bool{}
	e := newMediaEnv(t, func(d *Deps) {
		d.Options.NodeID = "here"
		d.Options.AdvertiseURL = func() string { return "http://127.0.0.1:9" }
		d.Options.NodeRunning = func(_ context.Context, node string) (bool, error) { return running[node], nil }
	})
	ctx := context.Background()
	st := e.createStream("alice")
	goLive := func(node, session string) {
		t.Helper()
		if _, _, err := e.store.SetStreamLive(ctx, st.ID, session, true, time.Now()); err != nil {
			t.Fatal(err)
		}
		o := cart.MediaOrigin{NodeID: node, URL: "http://127.0.0.1:9", Session: session}
		if err := e.store.ClaimMediaOrigin(ctx, st.ID, o, time.Now().Add(-orphanAfter-time.Second), originTTL); err != nil {
			t.Fatal(err)
		}
	}
	look := func(release bool, want cart.StreamStatus, why string) {
		t.Helper()
		if !e.web.releaseOrphans(ctx, release) {
			t.Fatalf("%s: the look says the store failed", why)
		}
		if got := e.streamStatus(st.ID); got != want {
			t.Fatalf("%s: got %s, want %s", why, got, want)
		}
	}

	goLive("node-x", "s1")
	running["node-x"] = true
	look(true, cart.StreamLive, "stale claim of a running node")
	running["node-x"] = false
	look(false, cart.StreamLive, "stale claim of a gone node, the previous look failed")
	look(true, cart.StreamIdle, "stale claim of a gone node")

	// This node's own id: a session its relay does not have is an earlier process's.
	goLive("here", "s2")
	look(true, cart.StreamIdle, "stale claim of this node's id, session not here")

	// A publisher came since: the stale claim of the old session leaves it live.
	goLive("node-x", "s3")
	if _, _, err := e.store.SetStreamLive(ctx, st.ID, "s4", true, time.Now()); err != nil {
		t.Fatal(err)
	}
	look(true, cart.StreamLive, "stale claim of a session that is no longer the publisher")
}
