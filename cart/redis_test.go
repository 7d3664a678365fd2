package cart

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// testRedisURL is the shared Redis every developer machine and CI runs. Tests use a
// random key prefix each and delete their keys after; they never flush.
const testRedisURL = "redis://127.0.0.1:6379/0"

// openTestRedis opens a RedisStore on url with a fresh random prefix and deletes the
// prefix's keys when the test ends. A Redis that does not answer fails the test.
func openTestRedis(t testing.TB, url string) *RedisStore {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "lctest:" + hex.EncodeToString(b) + ":"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := OpenRedis(ctx, url, RedisOptions{Prefix: prefix})
	if err != nil {
		t.Fatalf("OpenRedis %s: %v (is redis-server running?)", url, err)
	}
	t.Cleanup(func() {
		deleteKeys(t, st.rdb, prefix)
		st.Close()
	})
	return st
}

// deleteKeys removes every key under prefix (SCAN + UNLINK, never FLUSHDB).
func deleteKeys(t testing.TB, rdb *redis.Client, prefix string) {
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		rdb.Unlink(ctx, batch...)
	}
	if err := iter.Err(); err != nil {
		t.Logf("cleaning up %s*: %v", prefix, err)
	}
}

func TestRedisStore(t *testing.T) {
	runStoreSuite(t, func(t *testing.T) Store { return openTestRedis(t, testRedisURL) })
}
