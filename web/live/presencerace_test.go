package live

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// slowSetPresence is a real RedisPresence whose SetLocal of one count waits until
// released, as a write held up on its way to Redis (a slow connection, a busy Redis):
// it lets a test order two nodes' concurrent writes the unlucky way.
type slowSetPresence struct {
	*RedisPresence
	slowCount int
	entered   chan struct{} // closed when the slow SetLocal starts
	release   chan struct{} // closing it lets the slow SetLocal go on
	once      sync.Once
	armed     atomic.Bool // only writes once armed are held
}

func (p *slowSetPresence) SetLocal(ctx context.Context, sid string, n int) error {
	if n == p.slowCount && p.armed.Load() {
		first := false
		p.once.Do(func() { first = true })
		if first {
			close(p.entered)
			<-p.release
		}
	}
	return p.RedisPresence.SetLocal(ctx, sid, n)
}

// TestPresenceConcurrentJoinsAndLeaves: the shared viewer count equals the node's
// connections once they have joined (their snapshot came) or left, whatever order
// their concurrent writes of the count reach Redis in. A write of an older count that
// lands after a newer one must not stand (before the fix the count stayed wrong until
// the next refresh, 10 s, or, once the room was gone, until it expired after 30 s).
func TestPresenceConcurrentJoinsAndLeaves(t *testing.T) {
	for _, tc := range []struct {
		name string
		slow int // the count whose write is held up
	}{{"joins", 1}, {"leaves", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			rdb, prefix := testRedis(t, "livetest-presence")
			cleanupPrefix(t, rdb, prefix)
			p := &slowSetPresence{RedisPresence: NewRedisPresence(rdb, prefix, "node-a", nil),
				slowCount: tc.slow, entered: make(chan struct{}), release: make(chan struct{})}
			bus := NewRedisBus(rdb, prefix, nil, slog.New(slog.NewTextHandler(os.Stderr, nil)))
			t.Cleanup(func() { bus.Close() })
			ts := newTestServer(t, Config{Bus: bus, Presence: p, ViewersInterval: time.Hour})
			sid := uuid.NewString()
			ctx := context.Background()

			if tc.name == "joins" {
				p.armed.Store(true)
				// The first viewer's write (count 1) is held; the second's (count 2)
				// goes first; then the first's is let go.
				// The dials run in goroutines: one that fails ends its goroutine
				// (t.Fatal) and sends nil, so the test fails instead of waiting forever.
				first := make(chan *client, 1)
				go func() {
					var c *client
					defer func() { first <- c }()
					c = ts.dial(t, sid, "")
				}()
				recvOrFail(t, p.entered, "the first join's count write")
				secondDone := make(chan *client, 1)
				go func() {
					var c *client
					defer func() { secondDone <- c }()
					c = ts.dial(t, sid, "")
					c.next(t)
				}()
				// Give the second join time to write its count while the first's is held
				// (before the fix it does; after it, it waits for the first's write).
				select {
				case c := <-secondDone:
					secondDone <- c
				case <-time.After(300 * time.Millisecond):
				}
				close(p.release)
				recvClient(t, first, "the first viewer").next(t)
				recvClient(t, secondDone, "the second viewer's snapshot")
				if n, err := p.Count(ctx, sid); err != nil || n != 2 {
					t.Fatalf("shared count with 2 viewers joined: got %d (%v), want 2", n, err)
				}
				return
			}
			// leaves: two viewers; the first to leave writes 1 (held), the second 0;
			// then the 1 is let go. Nothing is open: the count must be 0.
			c1, c2 := ts.dial(t, sid, ""), ts.dial(t, sid, "")
			c1.next(t)
			c2.next(t)
			p.armed.Store(true)
			c1.ws.Close()
			recvOrFail(t, p.entered, "the first leave's count write")
			c2.ws.Close()
			time.Sleep(300 * time.Millisecond) // the second leave's write, if it does not wait
			close(p.release)
			deadline := time.Now().Add(5 * time.Second)
			for len(ts.hub.roomList()) > 0 {
				if time.Now().After(deadline) {
					t.Fatal("the room was not released within 5 s of both leaving")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if n, err := p.Count(ctx, sid); err != nil || n != 0 {
				t.Fatalf("shared count once both left: got %d (%v), want 0", n, err)
			}
		})
	}
}

// recvOrFail waits for ch to deliver or close, failing the test after 10 s.
func recvOrFail(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing within 10 s", what)
	}
}

// recvClient waits for a client from a dialling goroutine: nil means its dial or read
// failed (its goroutine has reported why).
func recvClient(t *testing.T, ch <-chan *client, what string) *client {
	t.Helper()
	select {
	case c := <-ch:
		if c == nil {
			t.Fatalf("%s: its goroutine failed", what)
		}
		return c
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing within 10 s", what)
	}
	return nil
}
