package web

import (
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/livecart/livecart/web/auth"
)

// TestRouteStackShallow: a route runs a few frames below net/http's call of the
// server's handler (its layers are calls that return before the route, not handlers
// wrapping one another: a request parked in its route, as every hold and checkout of a
// sale storm waits for its store, is scanned frame by frame at every GC cycle), and it
// sees what the layers give it: the caller's identity and bearer, and the store bound's
// deadline on the same context.
func TestRouteStackShallow(t *testing.T) {
	e := newTestEnv(t, func(d *Deps) { d.Options.StoreTimeout = time.Minute })
	type seen struct {
		frames      []string
		user, token string
		deadline    bool
	}
	got := make(chan seen, 1)
	e.web.mux.HandleFunc("GET /api/test-stack-probe", func(w http.ResponseWriter, r *http.Request) {
		pcs := make([]uintptr, 64)
		frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
		var names []string
		for {
			f, more := frames.Next()
			if f.Function == "net/http.serverHandler.ServeHTTP" {
				break
			}
			names = append(names, f.Function)
			if !more {
				t.Errorf("no net/http.serverHandler.ServeHTTP above the route: %v", names)
				break
			}
		}
		_, deadline := r.Context().Deadline()
		got <- seen{frames: names, user: identity(r).UserID, token: bearer(r), deadline: deadline}
		w.WriteHeader(http.StatusNoContent)
	})
	tok := e.token(auth.RoleViewer, "stack-probe")
	resp, raw := e.do("GET", "/api/test-stack-probe", tok, nil)
	e.expect(resp, raw, http.StatusNoContent, "", nil)
	s := <-got
	// rootHandler.ServeHTTP, serveLayers, ServeMux.ServeHTTP, HandlerFunc.ServeHTTP
	// (the chain of wrapping handlers was 14).
	if len(s.frames) > 4 {
		t.Errorf("%d frames between net/http and the route, want at most 4:\n%s", len(s.frames), strings.Join(s.frames, "\n"))
	}
	if s.user != "stack-probe" || s.token != tok || !s.deadline {
		t.Errorf("the route saw user %q, bearer %t, deadline %t; want stack-probe, the token, a deadline", s.user, s.token == tok, s.deadline)
	}
}
