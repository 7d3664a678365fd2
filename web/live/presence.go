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

	mu        sync.Mutex // guards the maps and pruneAt
	counts    map[string]int
	announced map[string]announcement
	pruneAt   int // prune announced when it grows past this many entries
}

// announcedKeep is how long the last announcement of a stream without viewers here is
// kept: far longer than any viewers interval, so that viewers who leave and come back
// get no event early or twice (RedisPresence keeps it an hour).
const announcedKeep = time.Minute

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
		// streams with connections). The last announcement stays: it still bounds
		// when the next one may go out, and with which count.
		delete(p.counts, sid)
		p.pruneAnnounced()
		return nil
	}
	p.counts[sid] = n
	return nil
}

// pruneAnnounced drops the announcements older than announcedKeep of streams without
// viewers here, once the map has doubled since the last pruning (amortised O(1)).
func (p *MemoryPresence) pruneAnnounced() {
	if len(p.announced) <= max(p.pruneAt, 64) {
		return
	}
	now := p.now()
	for sid, a := range p.announced {
		if _, ok := p.counts[sid]; !ok && now.Sub(a.at) >= announcedKeep {
			delete(p.announced, sid)
		}
	}
	p.pruneAt = 2 * len(p.announced)
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
