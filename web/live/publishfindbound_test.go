package live

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// monitor streams what Redis runs (MONITOR; a script's commands too) into lines.
func monitor(t *testing.T, addr string) <-chan string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // the test reads what it needs; never block Redis's output
			}
		}
	}()
	return lines
}

// TestPublishRetryReadsOnlyLaterHistory: a retry looks its publication up only in the
// history entries after the newest seq this node had got for the stream before the
// first try (the event, if that try ran, came later), not in the whole history (~1,000
// entries, ~4 ms of Redis's time a retry): its XREVRANGE starts after seq 1. The
// publication is still found (seq 2, once). (Before: XREVRANGE + -.)
func TestPublishRetryReadsOnlyLaterHistory(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	r, p, direct, bus := busBehindDeafProxy(t, "bound-"+uuid.NewString()[:8])
	ctx := context.Background()
	sid := uuid.NewString()
	body := []byte(`"text":"once","ts":"2026-12-03T08:00:00Z"}`)

	if rec, err := bus.Publish(ctx, sid, EventAnnounce, body); err != nil || rec.Seq != 1 {
		t.Fatalf("first event: seq %d, %v; want 1", rec.Seq, err)
	}
	lines := monitor(t, r.addr())
	rec, err := publishAfterLostReply(t, bus, direct, p, sid, body, 2, 2)
	if err != nil || rec.Seq != 2 {
		t.Fatalf("publish: seq %d, %v; want seq 2", rec.Seq, err)
	}
	if n, _ := direct.XLen(ctx, bus.key(sid, "history")).Result(); n != 2 {
		t.Fatalf("history holds %d events, want 2", n)
	}
	var reads []string
	for deadline := time.After(2 * time.Second); len(reads) == 0; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("monitor ended")
			}
			if i := strings.Index(l, `"XREVRANGE"`); i >= 0 {
				reads = append(reads, l[i:])
			}
		case <-deadline:
			t.Fatal("no XREVRANGE seen: the retry did not look the publication up")
		}
	}
	want := `"XREVRANGE" "` + bus.key(sid, "history") + `" "+" "2-0"`
	if reads[0] != want {
		t.Errorf("the retry read %s, want %s (the entries after seq 1 only)", reads[0], want)
	}
}
