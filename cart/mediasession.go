package cart

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// mediaSessions is the embedded store's record of where WHEP sessions live
// (Store.PutMediaSession). It is memory only: a media session ends with its node's
// process, and the embedded store has one node.
type mediaSessions struct {
	mu    sync.Mutex
	m     map[string]mediaSession // key: stream id + "/" + session
	sweep int                     // sweep lapsed entries once the map has this many
}

type mediaSession struct {
	url   string
	until time.Time
}

func (ms *mediaSessions) put(key, url string, until time.Time, now time.Time) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		ms.m = make(map[string]mediaSession)
	}
	ms.m[key] = mediaSession{url: url, until: until}
	if len(ms.m) >= ms.sweep {
		for k, v := range ms.m {
			if !v.until.After(now) {
				delete(ms.m, k)
			}
		}
		ms.sweep = max(2*len(ms.m), 1024)
	}
}

func (ms *mediaSessions) get(key string, now time.Time) string {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if v, ok := ms.m[key]; ok && v.until.After(now) {
		return v.url
	}
	return ""
}

func (ms *mediaSessions) drop(key string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	delete(ms.m, key)
}

// PutMediaSession records where the stream's WHEP session lives (in memory).
func (s *BoltStore) PutMediaSession(ctx context.Context, streamID, session, url string, now time.Time, ttl time.Duration) error {
	s.media.put(streamID+"/"+session, url, now.Add(ttl), now)
	return nil
}

// MediaSession returns where the stream's WHEP session lives, "" when not recorded.
func (s *BoltStore) MediaSession(ctx context.Context, streamID, session string, now time.Time) (string, error) {
	return s.media.get(streamID+"/"+session, now), nil
}

// DropMediaSession forgets where the stream's WHEP session lives.
func (s *BoltStore) DropMediaSession(ctx context.Context, streamID, session string) error {
	s.media.drop(streamID + "/" + session)
	return nil
}

// mediaSessionKey is the Redis key of a stream's WHEP session: a string holding the
// node's url, expiring by Redis's clock.
func (s *RedisStore) mediaSessionKey(streamID, session string) string {
	return s.base(streamID) + "whep:" + session
}

// PutMediaSession records where the stream's WHEP session lives, expiring after ttl
// by Redis's clock (now is ignored).
func (s *RedisStore) PutMediaSession(ctx context.Context, streamID, session, url string, now time.Time, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.mediaSessionKey(streamID, session), url, ttl).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// MediaSession returns where the stream's WHEP session lives, "" when not recorded.
func (s *RedisStore) MediaSession(ctx context.Context, streamID, session string, now time.Time) (string, error) {
	url, err := s.rdb.Get(ctx, s.mediaSessionKey(streamID, session)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", nil
	case err != nil:
		return "", unavailable(err)
	}
	return url, nil
}

// DropMediaSession forgets where the stream's WHEP session lives.
func (s *RedisStore) DropMediaSession(ctx context.Context, streamID, session string) error {
	if err := s.rdb.Del(ctx, s.mediaSessionKey(streamID, session)).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}
