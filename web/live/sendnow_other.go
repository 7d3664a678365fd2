//go:build !linux

package live

import "syscall"

// rawSends is false: without Linux's send flags (MSG_NOSIGNAL) every connection keeps
// no descriptor (batchConn.fd is -1) and its writer goroutine sends all.
const rawSends = false

func sendNow(int, []byte) (int, syscall.Errno) { panic("unreachable: rawSends is false") }

// limitUnsent is not needed: rawSends is false, so nothing calls it.
func limitUnsent(int) {}
