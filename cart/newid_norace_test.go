//go:build !race

package cart

import "testing"

// TestNewIDAllocations: newID allocates its string only (uuid.NewV7 also put its
// random bytes on the heap). Not under the race detector, whose crypto/rand reads
// allocate.
func TestNewIDAllocations(t *testing.T) {
	if n := testing.AllocsPerRun(200, func() { _ = newID() }); n != 1 {
		t.Errorf("newID: %.1f allocations, want 1 (the string)", n)
	}
}
