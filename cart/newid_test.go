package cart

import (
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
