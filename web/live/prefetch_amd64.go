package live

import "unsafe"

// prefetch asks the CPU to bring p's cache line in, without waiting for it.
//
//go:noescape
func prefetch(p unsafe.Pointer)
