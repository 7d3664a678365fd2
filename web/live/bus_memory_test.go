package live

import (
	"context"
	"testing"
)

func TestMemoryBusForgetsHistoryOfEndedStream(t *testing.T) {
	b := NewMemoryBus(nil, 100)
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
	if got := len(b.stream("s1").hist); got != endedHistory {
		t.Fatalf("got %d events kept after the end, want %d", got, endedHistory)
	}
	// A viewer that saw the event before the end still resumes from history.
	recs, ok, err := b.Since(ctx, "s1", end.Seq-1, end.Seq)
	if err != nil || !ok || len(recs) != 1 || recs[0].Seq != end.Seq {
		t.Fatalf("got %v %v %v, want the end event", recs, ok, err)
	}
	// An older since is answered with a snapshot (not served).
	if _, ok, _ := b.Since(ctx, "s1", 10, end.Seq); ok {
		t.Fatal("got history for since=10 after the end, want a snapshot")
	}
}
