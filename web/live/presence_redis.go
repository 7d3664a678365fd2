package live

import (
	"context"
	_ "embed"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed lua/count.lua
	countLua string
	//go:embed lua/setcount.lua
	setCountLua string
	//go:embed lua/announce.lua
	announceLua string

	countScript    = redis.NewScript(countLua)
	setCountScript = redis.NewScript(setCountLua)
	announceScript = redis.NewScript(announceLua)
)

// presenceTTL is how long a node's count stands without a refresh (the hub refreshes
// every 10 s), so a crashed node's viewers disappear: 20 to 30 s after it died, timed
// by Redis's clock (whatever the nodes' clocks say).
const presenceTTL = 30 * time.Second

// RedisPresence keeps each node's count per stream in a hash field with an expiry.
type RedisPresence struct {
	rdb    redis.UniversalClient
	prefix string
	node   string
	now    func() time.Time // the viewers events' interval (Announce)
	ttl    time.Duration    // presenceTTL; tests shorten it
}

var _ Presence = (*RedisPresence)(nil)

// NewRedisPresence returns the Presence of node; now may be nil.
func NewRedisPresence(rdb redis.UniversalClient, prefix, node string, now func() time.Time) *RedisPresence {
	if now == nil {
		now = time.Now
	}
	return &RedisPresence{rdb: rdb, prefix: prefix, node: node, now: now, ttl: presenceTTL}
}

func (p *RedisPresence) key(sid, name string) string { return p.prefix + ":live:{" + sid + "}:" + name }

// SetLocal implements Presence.
func (p *RedisPresence) SetLocal(ctx context.Context, sid string, n int) error {
	k := p.key(sid, "viewers")
	if n == 0 {
		return p.rdb.HDel(ctx, k, p.node).Err()
	}
	return setCountScript.Run(ctx, p.rdb, []string{k}, p.node, n, p.ttl.Milliseconds()).Err()
}

// Count implements Presence.
func (p *RedisPresence) Count(ctx context.Context, sid string) (int, error) {
	return countScript.Run(ctx, p.rdb, []string{p.key(sid, "viewers")}).Int()
}

// Announce implements Presence.
func (p *RedisPresence) Announce(ctx context.Context, sid string, count int, interval time.Duration) (bool, error) {
	n, err := announceScript.Run(ctx, p.rdb, []string{p.key(sid, "viewers-announced")},
		count, p.now().UnixMilli(), interval.Milliseconds()).Int()
	return n == 1, err
}

// Close implements Presence.
func (p *RedisPresence) Close() error { return nil }
