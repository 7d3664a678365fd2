package cart

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The media origin is fields origin_node, origin_url, origin_session and origin_seen
// (µs) of the stream hash. origin_seen is stamped and judged by Redis's clock (TIME),
// never by a node's: the nodes' clocks need not agree for their claims to hold for
// the lease and lapse after it.

// ClaimMediaOrigin records where the stream is published, checked and set by one
// script. now is ignored: the claim is stamped, and the other node's claim judged
// against ttl, by Redis's clock.
func (s *RedisStore) ClaimMediaOrigin(ctx context.Context, id string, o MediaOrigin, now time.Time, ttl time.Duration) error {
	_, err := s.run(ctx, "origin_set", id, o.NodeID, o.URL, o.Session, strconv.FormatInt(ttl.Microseconds(), 10))
	return err
}

// RenewMediaOrigin refreshes origin_seen if the origin is still the session's. now is
// ignored: the renewal is stamped by Redis's clock.
func (s *RedisStore) RenewMediaOrigin(ctx context.Context, id, session string, now time.Time) (bool, error) {
	r, err := s.run(ctx, "origin_renew", id, session)
	if err != nil {
		return false, err
	}
	return r.Changed, nil
}

// ClearMediaOrigin forgets the origin if it is still the session's (compare and
// delete in one script).
func (s *RedisStore) ClearMediaOrigin(ctx context.Context, id, session string) (bool, error) {
	r, err := s.run(ctx, "origin_clear", id, session)
	if err != nil {
		return false, err
	}
	return r.Changed, nil
}

// MediaOrigin returns where the stream is published: one read of its stream hash with
// Redis's clock (TIME, in the same transaction). Seen is given on the caller's clock,
// as now minus the claim's age by Redis's clock.
func (s *RedisStore) MediaOrigin(ctx context.Context, id string, now time.Time) (MediaOrigin, error) {
	var (
		get   *redis.SliceCmd
		clock *redis.TimeCmd
	)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		get = p.HMGet(ctx, s.base(id)+"stream", "status", "origin_node", "origin_url", "origin_session", "origin_seen")
		clock = p.Time(ctx)
		return nil
	})
	if err != nil {
		return MediaOrigin{}, unavailable(err)
	}
	v := get.Val()
	str := func(x any) string { s, _ := x.(string); return s }
	switch str(v[0]) {
	case "":
		return MediaOrigin{}, fmt.Errorf("stream %s: %w", id, ErrNotFound)
	case string(StreamEnded):
		return MediaOrigin{}, fmt.Errorf("stream %s has ended: %w", id, ErrConflict)
	}
	o := MediaOrigin{NodeID: str(v[1]), URL: str(v[2]), Session: str(v[3])}
	if us, err := strconv.ParseInt(str(v[4]), 10, 64); err == nil {
		age := clock.Val().Sub(time.UnixMicro(us))
		o.Seen = now.Add(-age).UTC()
	}
	return o, nil
}
