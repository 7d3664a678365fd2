package live

import (
	"context"
	"testing"
	"time"
)

func TestMemoryBusForgetsHistoryOfEndedStream(t *testing.T) {
	b := NewMemoryBus(nil, 100)
	var trims []func()
	b.afterFunc = func(d time.Duration, f func()) {
		if d != EndedRetention {
			t.Errorf("history trimmed %v after the end, want %v", d, EndedRetention)
		}
		trims = append(trims, f)
	}
	ctx := context.Background()
	for range 150 {
		if _, err := b.Publish(ctx, "s1", "announce", []byte(`"text":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	end, err := b.Publish(ctx, "s1", EventStream, []byte(`"stream":{"status":"ended"}}`))
	if err != nil {
		t.Fatal(err)
	}
	// Right after the end a viewer cut off 100 events before it still resumes.
	recs, ok, err := b.Since(ctx, "s1", end.Seq-100, end.Seq)
	if err != nil || !ok || len(recs) != 100 || recs[99].Seq != end.Seq {
		t.Fatalf("right after the end: got %d records, %v %v, want the last 100 events", len(recs), ok, err)
	}
	if len(trims) != 1 {
		t.Fatalf("got %d trims scheduled at the end, want 1", len(trims))
	}
	trims[0]() // the retention has passed
	if got := b.histLen("s1"); got != endedHistory {
		t.Fatalf("got %d events kept after the retention, want %d", got, endedHistory)
	}
	// A viewer that saw the event before the end still resumes from history.
	recs, ok, err = b.Since(ctx, "s1", end.Seq-1, end.Seq)
	if err != nil || !ok || len(recs) != 1 || recs[0].Seq != end.Seq {
		t.Fatalf("got %v %v %v, want the end event", recs, ok, err)
	}
	// An older since is answered with a snapshot (not served).
	if _, ok, _ := b.Since(ctx, "s1", 10, end.Seq); ok {
		t.Fatal("got history for since=10 after the end, want a snapshot")
	}
}

func (b *MemoryBus) histLen(sid string) int {
	s := b.stream(sid)
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hist)
}
