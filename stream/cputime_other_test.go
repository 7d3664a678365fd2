//go:build !unix

package stream

import "time"

// processCPU is not measured here (no getrusage): the benchmarks that need it skip.
func processCPU() (time.Duration, bool) { return 0, false }
