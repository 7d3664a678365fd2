package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/stream/rtctest"
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
	before, err := m.store.MediaOrigin(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	after, err := m.store.MediaOrigin(ctx, st.ID)
	if err != nil || after.Session != left.Session || !after.Seen.Equal(before.Seen) {
		t.Errorf("stored origin while publishing 1.5 s: got %+v %v, want the old claim %+v untouched (no claim, no renewals)",
			after, err, before)
	}
}
