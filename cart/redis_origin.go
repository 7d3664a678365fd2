package cart

import (
	"context"
	"fmt"
)

// SetMediaOrigin records where the stream is published: fields origin_node,
// origin_url and origin_session of its stream hash, set by one script.
func (s *RedisStore) SetMediaOrigin(ctx context.Context, id string, o MediaOrigin) error {
	_, err := s.run(ctx, "origin_set", id, o.NodeID, o.URL, o.Session)
	return err
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
	v, err := s.rdb.HMGet(ctx, s.base(id)+"stream", "status", "origin_node", "origin_url", "origin_session").Result()
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
	return MediaOrigin{NodeID: str(v[1]), URL: str(v[2]), Session: str(v[3])}, nil
}
