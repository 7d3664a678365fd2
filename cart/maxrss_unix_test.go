//go:build unix

package cart

import (
	"runtime"
	"syscall"
)

// maxRSS returns the process's peak resident set (bytes).
func maxRSS() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	if runtime.GOOS == "darwin" || runtime.GOOS == "ios" {
		return int64(ru.Maxrss) // bytes there; KiB elsewhere
	}
	return int64(ru.Maxrss) * 1024
}
