package cart

import (
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestNewIDIsV7: newID makes version 7 UUIDs of the RFC's variant in their canonical
// text, time-ordered (each id's text sorts after the one before, also within one
// millisecond), their time the clock's.
func TestNewIDIsV7(t *testing.T) {
	prev := ""
	before := time.Now().UnixMilli()
	for i := 0; i < 20000; i++ {
		id := newID()
		u, err := uuid.Parse(id)
		if err != nil || !ValidID(id) || u.String() != id {
			t.Fatalf("%q: not a canonical UUID: %v", id, err)
		}
		if u.Version() != 7 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("%q: version %d variant %v, want 7 and RFC 4122", id, u.Version(), u.Variant())
		}
		if id <= prev {
			t.Fatalf("%q after %q: not increasing", id, prev)
		}
		prev = id
		if ms := int64(u.Time()/10_000) - 12219292800000; ms < before-1 || ms > time.Now().UnixMilli()+1 {
			t.Fatalf("%q: time %d ms, want within [%d, now]", id, ms, before)
		}
	}
}

// TestNewIDConcurrent: ids made at once on several goroutines are all different, and
// each goroutine's increase; newID makes one allocation (its text; without -race).
func TestNewIDConcurrent(t *testing.T) {
	const workers, each = 8, 5000
	ids := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				ids[w] = append(ids[w], newID())
			}
		})
	}
	wg.Wait()
	seen := make(map[string]bool, workers*each)
	for _, list := range ids {
		for i, id := range list {
			if seen[id] {
				t.Fatalf("%q made twice", id)
			}
			seen[id] = true
			if i > 0 && id <= list[i-1] {
				t.Fatalf("%q after %q: not increasing", id, list[i-1])
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = newID() }); n != 1 && !raceEnabled {
		t.Fatalf("newID: %v allocations, want 1", n)
	}
}

// BenchmarkNewID: newID on both cores at once, as a storm's holds and checkouts make
// ids; BenchmarkNewIDLibrary is what newID was (uuid.NewV7's UUID, then its text).
func BenchmarkNewID(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = newID()
		}
	})
}

func BenchmarkNewIDLibrary(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = uuid.Must(uuid.NewV7()).String()
		}
	})
}
