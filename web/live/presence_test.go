package live

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestMemoryPresenceForgetsStreamsWithoutViewers: the single-node presence keeps
// nothing of a stream whose viewers all left: 100 streams watched once and left leave
// no count and no last announcement (it kept one announcement per stream ever watched
// for the process's life).
func TestMemoryPresenceForgetsStreamsWithoutViewers(t *testing.T) {
	ctx := context.Background()
	p := NewMemoryPresence(nil)
	for range 100 {
		sid := uuid.NewString()
		p.SetLocal(ctx, sid, 1)
		if ok, _ := p.Announce(ctx, sid, 1, time.Second); !ok {
			t.Fatal("first announcement of a stream's viewers refused")
		}
		p.SetLocal(ctx, sid, 0)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.counts) != 0 || len(p.announced) != 0 {
		t.Fatalf("after 100 streams' viewers left: %d counts, %d announcements kept, want none", len(p.counts), len(p.announced))
	}
}
