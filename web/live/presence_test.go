package live

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestMemoryPresenceForgetsStreamsWithoutViewers: the single-node presence keeps no
// count of a stream whose viewers all left, and its last announcement only for
// announcedKeep (TestPresenceConformance: long enough to hold the interval when viewers
// come back), not for the process's life: 1,000 streams watched once and left, then 200
// more a minute later, leave at most those 200 and the one still watched.
func TestMemoryPresenceForgetsStreamsWithoutViewers(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	p := NewMemoryPresence(clk.Now)
	watchOnce := func() {
		sid := uuid.NewString()
		p.SetLocal(ctx, sid, 1)
		if ok, _ := p.Announce(ctx, sid, 1, time.Second); !ok {
			t.Fatal("first announcement of a stream's viewers refused")
		}
		p.SetLocal(ctx, sid, 0)
	}
	for range 1000 {
		watchOnce()
	}
	watched := uuid.NewString()
	p.SetLocal(ctx, watched, 2)
	p.Announce(ctx, watched, 2, time.Second)
	clk.Add(announcedKeep)
	for range 200 {
		watchOnce()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, kept := p.announced[watched]
	if len(p.counts) != 1 || len(p.announced) > 201 || !kept {
		t.Fatalf("%v after 1,000 streams' viewers left and 200 more came and went: %d counts, %d announcements (the watched stream's: %v), want 1 and at most 201 with it",
			announcedKeep, len(p.counts), len(p.announced), kept)
	}
}
