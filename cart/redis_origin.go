package cart

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// ClaimMediaOrigin records where the stream is published: fields origin_node,
// origin_url, origin_session and origin_seen (µs) of its stream hash, checked and set
// by one script.
func (s *RedisStore) ClaimMediaOrigin(ctx context.Context, id string, o MediaOrigin, now time.Time, ttl time.Duration) error {
	_, err := s.run(ctx, "origin_set", id, o.NodeID, o.URL, o.Session,
		strconv.FormatInt(now.UnixMicro(), 10), strconv.FormatInt(ttl.Microseconds(), 10))
	return err
}

// RenewMediaOrigin refreshes origin_seen if the origin is still the session's.
func (s *RedisStore) RenewMediaOrigin(ctx context.Context, id, session string, now time.Time) (bool, error) {
	r, err := s.run(ctx, "origin_renew", id, session, strconv.FormatInt(now.UnixMicro(), 10))
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

// MediaOrigin returns where the stream is published (one read of its stream hash).
func (s *RedisStore) MediaOrigin(ctx context.Context, id string) (MediaOrigin, error) {
	v, err := s.rdb.HMGet(ctx, s.base(id)+"stream", "status", "origin_node", "origin_url", "origin_session", "origin_seen").Result()
	if err != nil {
		return MediaOrigin{}, unavailable(err)
	}
	str := func(x any) string { s, _ := x.(string); return s }
	switch str(v[0]) {
	case "":
		return MediaOrigin{}, fmt.Errorf("stream %s: %w", id, ErrNotFound)
	case string(StreamEnded):
		return MediaOrigin{}, fmt.Errorf("stream %s has ended: %w", id, ErrConflict)
	}
	o := MediaOrigin{NodeID: str(v[1]), URL: str(v[2]), Session: str(v[3])}
	if us, err := strconv.ParseInt(str(v[4]), 10, 64); err == nil {
		o.Seen = time.UnixMicro(us).UTC()
	}
	return o, nil
}
