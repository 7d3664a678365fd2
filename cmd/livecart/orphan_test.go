package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/stream/rtctest"
	"github.com/livecart/livecart/web/auth"
)

// A stream whose publisher's node dies (kill -9: no leave is recorded on the way out)
// must not stay live for ever: nobody publishes it any more (API.md: when the publisher
// leaves, connection lost included, it is idle again). It stayed "live" in the store, on
// GET /api/streams/{sid} and on the viewers' screens, with no media, until a publisher
// came back and left again.

// startKillableEmbedded runs bin on the embedded store in dataDir (an earlier process's
// file, if any) and returns its base URL and the kill (SIGKILL, waited for).
func startKillableEmbedded(t *testing.T, bin, dataDir, secret string) (base string, kill func()) {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "livecart.yaml")
	if err := os.WriteFile(conf, []byte("log:\n  level: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	return startKillableProcess(t, "embedded node", bin, conf, addr,
		"LIVECART_AUTH_SECRET="+secret, "LIVECART_DATA_DIR="+dataDir, "LIVECART_STORE=embedded")
}

// waitStatus polls base until the stream's status is want, failing after d.
func waitStatus(t *testing.T, base, sid, want string, d time.Duration, why string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := streamStatus(t, base, sid)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: status after %v: got %q, want %q", why, d, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStreamIdleAfterKillEmbedded: the single embedded node is killed while a stream is
// live and started again on its data: no publisher can be there (the relay is new), so
// the stream is idle. It stayed live.
func TestStreamIdleAfterKillEmbedded(t *testing.T) {
	bin := builtBinary(t)
	dataDir := t.TempDir()
	const secret = "orphan-embedded-secret-0123456789"
	creator, err := auth.New([]byte(secret), nil).Mint(auth.Identity{UserID: "cleo", Name: "Cleo", Role: auth.RoleCreator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	base, kill := startKillableEmbedded(t, bin, dataDir, secret)
	var st struct{ ID string }
	call(t, "POST", base+"/api/streams", creator, map[string]string{"title": "crash"}, 201, &st)
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	publishSession(t, api, base, st.ID, creator)
	waitStatus(t, base, st.ID, "live", 5*time.Second, "after the WHIP")
	kill()

	base, _ = startKillableEmbedded(t, bin, dataDir, secret)
	waitStatus(t, base, st.ID, "idle", 5*time.Second, "after the restart that followed the kill")
	// The stream goes live again when a publisher comes.
	publishSession(t, api, base, st.ID, creator)
	waitStatus(t, base, st.ID, "live", 5*time.Second, "after a new WHIP")
}

// TestStreamIdleAfterPublisherNodeKilled: two nodes on one Redis; the node holding the
// stream's publisher is killed. Its claim as the stream's origin is no longer renewed,
// so the other node records the stream idle and tells its viewers. It stayed live.
func TestStreamIdleAfterPublisherNodeKilled(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	prefix := fmt.Sprintf("lc-orphan-%s", uuid.NewString()[:8])
	cleanupPrefix(t, prefix)
	a, kill := startKillableNode(t, "node-a", prefix)
	b := startNode(t, "node-b", prefix)
	creator := mint(t, auth.RoleCreator, "alice")
	var st struct{ ID string }
	call(t, "POST", b+"/api/streams", creator, map[string]string{"title": "orphan"}, 201, &st)
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	publishSession(t, api, a, st.ID, creator)
	waitStatus(t, b, st.ID, "live", 5*time.Second, "after the WHIP on A")
	viewer := dialWS(t, b, st.ID, "")
	next(t, viewer, "snapshot")
	statuses := streamStatuses(t, viewer)
	kill()
	killed := time.Now()
	waitStatus(t, b, st.ID, "idle", 30*time.Second, "after the publisher's node was killed")
	t.Logf("idle %v after the kill", time.Since(killed).Round(100*time.Millisecond))
	if got := nextStreamStatus(statuses, 5*time.Second); got != "idle" {
		t.Fatalf("viewer on B: got stream event %q, want idle", got)
	}
	// The stream can go live again, on B.
	publishSession(t, api, b, st.ID, creator)
	waitStatus(t, b, st.ID, "live", 5*time.Second, "after a new WHIP on B")
}
