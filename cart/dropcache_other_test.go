//go:build !linux

package cart

import "testing"

// dropFileCache needs posix_fadvise as Linux has it: a cold open is not measured here.
func dropFileCache(b *testing.B, _ string) {
	b.Skip("dropping a file's cached pages is done on Linux only")
}
