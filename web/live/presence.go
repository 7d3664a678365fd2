package live

import (
	"context"
	"sync"
	"time"
)

// Presence counts a stream's open websocket connections over all nodes.
type Presence interface {
	// SetLocal records that this node has n connections to sid (refreshing its TTL).
	SetLocal(ctx context.Context, sid string, n int) error
	// Count returns the connections to sid on all live nodes.
	Count(ctx context.Context, sid string) (int, error)
	// Announce reports whether a viewers event carrying count should be published
	// now: count differs from the last announced one and none was announced within
	// the last interval. A true answer records count as announced.
	Announce(ctx context.Context, sid string, count int, interval time.Duration) (bool, error)
	// Close releases the presence.
	Close() error
}

// MemoryPresence is the single-node Presence.
type MemoryPresence struct {
	now func() time.Time

	mu        sync.Mutex // guards the maps
	counts    map[string]int
	announced map[string]announcement
}

type announcement struct {
	count int
	at    time.Time
}

var _ Presence = (*MemoryPresence)(nil)

// NewMemoryPresence returns a MemoryPresence; now may be nil (time.Now).
func NewMemoryPresence(now func() time.Time) *MemoryPresence {
	if now == nil {
		now = time.Now
	}
	return &MemoryPresence{now: now, counts: map[string]int{}, announced: map[string]announcement{}}
}

// SetLocal implements Presence.
func (p *MemoryPresence) SetLocal(_ context.Context, sid string, n int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n == 0 {
		// No viewers here: nothing to announce to either (the hub announces the
		// streams with connections). Its next viewer's count is announced anew.
		delete(p.counts, sid)
		delete(p.announced, sid)
		return nil
	}
	p.counts[sid] = n
	return nil
}

// Count implements Presence.
func (p *MemoryPresence) Count(_ context.Context, sid string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[sid], nil
}

// Announce implements Presence.
func (p *MemoryPresence) Announce(_ context.Context, sid string, count int, interval time.Duration) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	last, ok := p.announced[sid]
	if ok && (last.count == count || now.Sub(last.at) < interval) {
		return false, nil
	}
	if !ok && count == 0 {
		return false, nil
	}
	p.announced[sid] = announcement{count: count, at: now}
	return true, nil
}

// Close implements Presence.
func (p *MemoryPresence) Close() error { return nil }
