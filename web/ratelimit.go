package web

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimits are optional request limits; a zero rate turns that limit off. They are
// kept per node: behind a load balancer over n nodes a client gets at most n times them.
type RateLimits struct {
	PerIPPerSecond            float64
	PerIPBurst                int
	HoldsPerUserPerSecond     float64
	CheckoutsPerUserPerSecond float64
}

// limiterSet is one token bucket per key, forgetting keys idle for a while so it stays
// bounded by the number of recently active clients.
type limiterSet struct {
	limit rate.Limit
	burst int

	mu    sync.Mutex
	byKey map[string]*keyedLimiter // guarded by mu
	swept time.Time                // guarded by mu
}

type keyedLimiter struct {
	lim  *rate.Limiter
	seen time.Time
}

// newLimiterSet returns nil (no limit) when perSecond is 0.
func newLimiterSet(perSecond float64, burst int) *limiterSet {
	if perSecond <= 0 {
		return nil
	}
	if burst < 1 {
		burst = int(math.Max(1, math.Ceil(perSecond)))
	}
	return &limiterSet{limit: rate.Limit(perSecond), burst: burst, byKey: map[string]*keyedLimiter{}}
}

const limiterIdle = 2 * time.Minute

// allow takes one token for key; when none is left it returns how long to wait.
func (l *limiterSet) allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > limiterIdle {
		for k, e := range l.byKey {
			if now.Sub(e.seen) > limiterIdle {
				delete(l.byKey, k)
			}
		}
		l.swept = now
	}
	e := l.byKey[key]
	if e == nil {
		e = &keyedLimiter{lim: rate.NewLimiter(l.limit, l.burst)}
		l.byKey[key] = e
	}
	e.seen = now
	res := e.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// rateLimited is the 429 error with the Retry-After the client should honour.
func rateLimited(w http.ResponseWriter, wait time.Duration) error {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return apiError(http.StatusTooManyRequests, "rate_limited", "too many requests, retry in "+strconv.Itoa(secs)+"s")
}

// ipLimited applies the per-IP limit to every request but health, readiness and
// metrics: it answers 429 and reports true when the request's IP is over it.
func (s *Server) ipLimited(w http.ResponseWriter, r *http.Request) bool {
	if s.perIP == nil {
		return false
	}
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return false
	}
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	if ok, wait := s.perIP.allow(ip, s.deps.Now()); !ok {
		s.fail(w, r, rateLimited(w, wait))
		return true
	}
	return false
}

// allowUser applies a per-user limit (holds, checkouts); it returns the 429 error to
// send, or nil.
func (s *Server) allowUser(w http.ResponseWriter, l *limiterSet, userID string) error {
	if ok, wait := l.allow(userID, s.deps.Now()); !ok {
		return rateLimited(w, wait)
	}
	return nil
}
