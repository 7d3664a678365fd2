package live

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/livecart/livecart/cart"
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
	if _, ok, err := b.Since(ctx, "s1", 10, end.Seq); err != nil || ok {
		t.Fatalf("since=10 after the end: got ok=%v err=%v, want a snapshot (not ok)", ok, err)
	}
}

func (b *MemoryBus) histLen(sid string) int {
	s := b.stream(sid)
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hist)
}

// TestMemoryBusSeqGoesOnAfterRestart: on the embedded store's SeqStore, a new bus (a
// restarted node) continues each stream's seq above every seq an earlier one gave, also
// one killed in the middle of a reserved block; a viewer's seq from before is not in
// the new history (a snapshot follows); a stream without events still starts at 1.
func TestMemoryBusSeqGoesOnAfterRestart(t *testing.T) {
	st, err := cart.OpenBolt(filepath.Join(t.TempDir(), "livecart.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	publish := func(b *MemoryBus, sid string, n int) int64 {
		var last Record
		for range n {
			if last, err = b.Publish(ctx, sid, "announce", []byte(`"text":"x"}`)); err != nil {
				t.Fatal(err)
			}
		}
		return last.Seq
	}
	before := int64(0)
	for run, n := range []int{3, seqBlock + 5, 1} {
		b := NewMemoryBus(nil, 100)
		b.SetSeqStore(st)
		last, cancel, err := b.Subscribe(ctx, "s1", func(Record) {})
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		if run > 0 && last <= before {
			t.Fatalf("run %d: got last seq %d after a restart, want above %d, the last seq before", run, last, before)
		}
		if _, ok, _ := b.Since(ctx, "s1", before, last); run > 0 && ok {
			t.Fatalf("run %d: the events after seq %d (before the restart) are served from the new history, want a snapshot", run, before)
		}
		if got := publish(b, "s1", n); got != last+int64(n) {
			t.Fatalf("run %d: got seq %d after %d events, want %d", run, got, n, last+int64(n))
		}
		before = last + int64(n)
	}
	if got := publish(memoryBusOn(st), "fresh", 1); got != 1 {
		t.Fatalf("a stream's first event: got seq %d, want 1", got)
	}
}

// memoryBusOn is a MemoryBus keeping its seqs in st.
func memoryBusOn(st SeqStore) *MemoryBus {
	b := NewMemoryBus(nil, 0)
	b.SetSeqStore(st)
	return b
}

// TestMemoryBusMutesOutliveRestart: on the embedded store's MuteStore a new bus (a
// restarted node) takes up the mutes not yet expired; lifted and expired ones are gone.
func TestMemoryBusMutesOutliveRestart(t *testing.T) {
	st, err := cart.OpenBolt(filepath.Join(t.TempDir(), "livecart.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Date(2026, 12, 5, 4, 0, 0, 0, time.UTC)
	b := NewMemoryBus(func() time.Time { return now }, 0)
	if err := b.KeepMutes(ctx, st); err != nil {
		t.Fatal(err)
	}
	for user, d := range map[string]time.Duration{"long": time.Hour, "short": time.Minute, "lifted": time.Hour} {
		if err := b.Mute(ctx, "s1", user, now.Add(d)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Unmute(ctx, "s1", "lifted"); err != nil {
		t.Fatal(err)
	}
	later := now.Add(2 * time.Minute)
	b2 := NewMemoryBus(func() time.Time { return later }, 0)
	if err := b2.KeepMutes(ctx, st); err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]bool{"long": true, "short": false, "lifted": false, "other": false} {
		until, muted, err := b2.MutedUntil(ctx, "s1", user)
		if err != nil || muted != want {
			t.Errorf("%s after the restart: got muted %v (until %v, %v), want %v", user, muted, until, err, want)
		}
		if want && !until.Equal(now.Add(time.Hour)) {
			t.Errorf("%s: got until %v, want %v", user, until, now.Add(time.Hour))
		}
	}
}
