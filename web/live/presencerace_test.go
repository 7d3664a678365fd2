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
				first := make(chan *client, 1)
				go func() { first <- ts.dial(t, sid, "") }()
				<-p.entered
				secondDone := make(chan *client, 1)
				go func() {
					c := ts.dial(t, sid, "")
					c.next(t)
					secondDone <- c
				}()
				// Give the second join time to write its count while the first's is held
				// (before the fix it does; after it, it waits for the first's write).
				select {
				case c := <-secondDone:
					secondDone <- c
				case <-time.After(300 * time.Millisecond):
				}
				close(p.release)
				(<-first).next(t)
				<-secondDone
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
			<-p.entered
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
