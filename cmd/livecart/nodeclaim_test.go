package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// TestNodeIDInUse: a node started with the node_id of a running node on the same Redis
// (and prefix) does not start, and says why: it started, and the two nodes' viewer
// counts overwrote each other (3 viewers on one, 2 on the other: the stream said 2).
// Once the first node has stopped, the id is free at once; a claim left by a process
// that was killed lapses and the node starts then.
func TestNodeIDInUse(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	prefix := fmt.Sprintf("lc-nodeid-%s", uuid.NewString()[:8])
	cleanupPrefix(t, prefix)
	cfg := redisConfig(t, "redis://127.0.0.1:6379/0", prefix)
	cfg.NodeID = "node-dup"
	_, stop := runMainUntil(t, "first", cfg)

	second := redisConfig(t, "redis://127.0.0.1:6379/0", prefix)
	second.NodeID = "node-dup"
	start := time.Now()
	m, err := NewMain(context.Background(), second, io.Discard)
	if err == nil {
		m.Close()
		t.Fatal("a second node with a running node's node_id started, want an error")
	}
	if !errors.Is(err, errNodeIDInUse) {
		t.Fatalf("second node: got %v, want %v", err, errNodeIDInUse)
	}
	t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)

	stop()
	start = time.Now()
	runMainUntil(t, "after the first stopped", second)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the id of a stopped node: started after %v, want at once", d)
	}

	// A claim left behind (its process killed) lapses.
	third := redisConfig(t, "redis://127.0.0.1:6379/0", prefix)
	third.NodeID = "node-killed"
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	if err := rdb.Set(context.Background(), prefix+":node:node-killed", "a-killed-process", 1500*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	runMainUntil(t, "after a killed process", third)
	if d := time.Since(start); d < time.Second || d > 5*time.Second {
		t.Errorf("the id of a killed process: started after %v, want once its claim lapsed (1.5 s)", d)
	}
}
