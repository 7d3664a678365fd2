package live

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// restart kills the private redis-server and starts an empty one on its port (no
// persistence: every key is lost, as after a crash without the append-only file).
func (r *hangableRedis) restart(t *testing.T) {
	t.Helper()
	r.restartFromDir(t, t.TempDir())
}

// TestPublishRetryAfterRedisRestartFindsItsEvent: the node had got seq 3 for a stream
// when Redis restarted empty (seqs start again from 1). A publication's first try runs
// (seq 1) but its reply is lost; other nodes publish until the stream is past seq 3
// again; the try's record is gone (as 60 s later) when the retry gets through. The
// retry must find its event (seq 1) in the history and not publish it a second time.
// (Before: the retry read only the history after seq 3, the seq the node remembered
// from before the restart, missed its event and published it again: seq 6, the
// viewers got it twice.)
func TestPublishRetryAfterRedisRestartFindsItsEvent(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	prefix := "restart-" + uuid.NewString()[:8]
	r, p, direct, bus := busBehindDeafProxy(t, prefix)
	other := NewRedisBus(direct, prefix, nil, nil) // another node
	t.Cleanup(func() { other.Close() })
	ctx := context.Background()
	sid := uuid.NewString()
	body := []byte(`"text":"once","ts":"2026-12-03T08:00:00Z"}`)
	otherBody := []byte(`"text":"other","ts":"2026-12-03T08:00:00Z"}`)

	for i := int64(1); i <= 3; i++ {
		if rec, err := bus.Publish(ctx, sid, EventAnnounce, otherBody); err != nil || rec.Seq != i {
			t.Fatalf("event %d before the restart: seq %d, %v", i, rec.Seq, err)
		}
	}
	r.restart(t)
	// The bus's connections come back, the script is loaded again (EVALSHA's NOSCRIPT
	// answer would be dropped too).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := bus.Publish(ctx, uuid.NewString(), EventAnnounce, otherBody); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the bus after the restart: %v", err)
		}
	}
	rec, err := publishAfterLostReplyThen(t, bus, direct, p, sid, body, 1, func() {
		for i := int64(2); i <= 5; i++ {
			if rec, err := other.Publish(ctx, sid, EventAnnounce, otherBody); err != nil || rec.Seq != i {
				t.Fatalf("another node's event: seq %d, %v; want %d", rec.Seq, err, i)
			}
		}
	}, 5)
	if err != nil || rec.Seq != 1 {
		t.Fatalf("publish: seq %d, %v; want seq 1 (its first try's)", rec.Seq, err)
	}
	all, err := direct.XRange(ctx, bus.key(sid, "history"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range all {
		if f, _ := e.Values["f"].(string); strings.Contains(f, `"text":"once"`) {
			n++
		}
	}
	if n != 1 || len(all) != 5 {
		t.Fatalf("history holds the event %d times in %d entries, want once in 5", n, len(all))
	}
}
