package rtctest

import (
	"runtime"
	"testing"
	"time"
)

// WaitGoroutines waits up to 15 s for the goroutine count to come back to base (what
// the test started with) and fails the test with every goroutine's stack if it does
// not. each, when not nil, runs before every count (e.g. to close idle HTTP
// connections, whose goroutines are the client's, not a leak).
func WaitGoroutines(t testing.TB, base int, each func()) {
	t.Helper()
	var n int
	deadline := time.Now().Add(15 * time.Second)
	for {
		if each != nil {
			each()
		}
		n = runtime.NumGoroutine()
		if n <= base || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n > base {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: got %d, want <= %d\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}
