//go:build !amd64

package live

import "unsafe"

// prefetch is a no-op where no prefetch instruction is wired.
func prefetch(unsafe.Pointer) {}
