package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
)

// syncBuffer is a bytes.Buffer safe for the server's concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSecretWarnings: a node started from the several-nodes example with its secret
// left as written (the placeholder everyone can read) warns that anyone can mint
// tokens; a node on Redis without a configured secret (one made in its own data dir)
// warns that the other nodes will not accept its tokens unless they share it. A node
// with a secret of its own, on either store, warns of neither.
func TestSecretWarnings(t *testing.T) {
	example, err := loadConfig(filepath.Join("..", "..", "configs", "node-a.yaml"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if example.Auth.Secret != exampleSecret {
		t.Fatalf("configs/node-a.yaml's secret %q is not exampleSecret %q: keep them equal", example.Auth.Secret, exampleSecret)
	}
	for _, tc := range []struct {
		name, store, secret string
		want                []string // warnings expected (substrings); none else of these
	}{
		{"example secret", "redis", exampleSecret, []string{"placeholder"}},
		{"own secret on redis", "redis", "a-long-random-secret-of-this-service", nil},
		{"secret made on redis", "redis", "", []string{"must share it"}},
		{"secret made embedded", "embedded", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			if tc.store == "redis" {
				prefix := fmt.Sprintf("lc-secret-%s", uuid.NewString()[:8])
				cleanupPrefix(t, prefix)
				cfg = redisConfig(t, "redis://127.0.0.1:6379/0", prefix)
			}
			cfg.Auth.Secret = tc.secret
			cfg.Log.Level = "warn"
			var out syncBuffer
			m, err := NewMain(context.Background(), cfg, &out)
			if err != nil {
				t.Fatal(err)
			}
			m.Close()
			log := out.String()
			for _, w := range []string{"placeholder", "must share it"} {
				want := false
				for _, x := range tc.want {
					want = want || x == w
				}
				if got := strings.Contains(log, w); got != want {
					t.Errorf("warning mentioning %q: got %v, want %v; log:\n%s", w, got, want, log)
				}
			}
		})
	}
}
