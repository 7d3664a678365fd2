package cart

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"
)

// detachedChangeTimeout bounds a change (and its audit line) that goes on after its
// caller stopped waiting.
const detachedChangeTimeout = 10 * time.Second

// change runs do, a store change and its audit line, so that the caller's end does
// not cut it, then tell (its events). A caller with a deadline (an API request's
// redis.request_timeout) waits for do at most until its ctx ends and then gets
// ErrUnavailable, but do goes on, on a context without that deadline: Redis may still
// run a script sent before (it was slow, not down), and a change that went in must be
// told and audited. Cut with the caller, it went in untold, and a retry, finding
// nothing left to change, told nobody either. tell runs on the caller's ctx when the
// caller took the result (the hub waits for an event at most until ctx ends; the
// event still goes out), else on do's context once do is done. A panic in do is the
// caller's error (a 500, as the HTTP layer's recoverer would make it), logged with its
// stack; one in tell after the caller left is logged.
func change[T any](ctx context.Context, log *slog.Logger, do func(context.Context) (T, error), tell func(context.Context, T)) (T, error) {
	if ctx.Done() == nil { // nothing can cut it
		v, err := do(ctx)
		if err == nil {
			tell(ctx, v)
		}
		return v, err
	}
	type result struct {
		v   T
		err error
	}
	got := make(chan result) // unbuffered: the caller takes it, or tell runs here
	go func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), detachedChangeTimeout)
		defer cancel()
		defer func() {
			if p := recover(); p != nil {
				log.Error("change: panic", "panic", p, "stack", string(debug.Stack()))
			}
		}()
		v, err := func() (v T, err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("cart: change panicked: %v\n%s", p, debug.Stack())
				}
			}()
			return do(dctx)
		}()
		select {
		case got <- result{v, err}:
		case <-ctx.Done():
			if err == nil {
				tell(dctx, v)
			} else {
				log.Warn("change: failed after its caller left", "err", err)
			}
		}
	}()
	select {
	case r := <-got:
		if r.err == nil {
			tell(ctx, r.v)
		}
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("%w: the change goes on, unanswered: %w", ErrUnavailable, ctx.Err())
	}
}
