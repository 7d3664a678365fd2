package cart

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestChangeOutlivesItsCaller: a change its caller stops waiting for answers the caller
// ErrUnavailable at its deadline, goes on to the end and is then told; a panic in a
// change is the caller's error, not a crash.
func TestChangeOutlivesItsCaller(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	told := make(chan int, 1)
	// The change takes 2 s: a caller answered within 1 s did not wait for it, with room
	// for a loaded -race run that wakes the caller late (a 200 ms change and a 150 ms
	// bound left it 100 ms).
	start := time.Now()
	_, err := change(ctx, slog.New(slog.DiscardHandler), func(ctx context.Context) (int, error) {
		time.Sleep(2 * time.Second)
		return 7, ctx.Err()
	}, func(_ context.Context, v int) { told <- v })
	if took := time.Since(start); !errors.Is(err, ErrUnavailable) || took > time.Second {
		t.Fatalf("caller of a slow change: got %v after %v, want unavailable at its 50 ms deadline", err, took)
	}
	select {
	case v := <-told:
		if v != 7 {
			t.Fatalf("told %d, want 7", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the change was not told after its caller left")
	}

	ctx2, cancel2 := context.WithCancel(context.Background()) // a request's: it can end
	defer cancel2()
	_, err = change(ctx2, slog.New(slog.DiscardHandler), func(context.Context) (int, error) {
		panic("boom")
	}, func(context.Context, int) { t.Error("a panicked change told") })
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("a panicking change: got %v, want its panic as the error", err)
	}
}
