package cart

import (
	"log/slog"
	"sync"
	"time"
)

// OutageLog logs a background call that keeps failing while a store is down without
// flooding the log: the first failure is logged at once, later ones at most once per
// interval with the number left out, and the first success after failures once.
// Its methods are safe for concurrent use.
type OutageLog struct {
	log      *slog.Logger
	what     string
	interval time.Duration
	now      func() time.Time

	mu         sync.Mutex
	failing    bool
	since      time.Time // first failure of the current outage
	last       time.Time // last failure logged
	suppressed int
}

// NewOutageLog returns an OutageLog of the call named what ("<what> failed", "<what>
// works again") writing to log; interval ≤ 0 means 10 s and now nil means time.Now.
func NewOutageLog(log *slog.Logger, what string, interval time.Duration, now func() time.Time) *OutageLog {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	return &OutageLog{log: log, what: what, interval: interval, now: now}
}

// Fail records a failure and logs it at Warn level unless one was logged less than
// an interval ago.
func (o *OutageLog) Fail(err error, args ...any) {
	o.mu.Lock()
	t := o.now()
	if !o.failing {
		o.failing, o.since = true, t
	} else if t.Sub(o.last) < o.interval {
		o.suppressed++
		o.mu.Unlock()
		return
	}
	n := o.suppressed
	o.last, o.suppressed = t, 0
	since := o.since
	o.mu.Unlock()
	o.log.Warn(o.what+" failed", append(args, "err", err, "failing_for", t.Sub(since).Round(time.Millisecond), "not_logged", n)...)
}

// OK records a success; after failures it logs once that the call works again.
func (o *OutageLog) OK() {
	o.mu.Lock()
	if !o.failing {
		o.mu.Unlock()
		return
	}
	t := o.now()
	since, n := o.since, o.suppressed
	o.failing, o.suppressed = false, 0
	o.mu.Unlock()
	o.log.Info(o.what+" works again", "failed_for", t.Sub(since).Round(time.Millisecond), "not_logged", n)
}
