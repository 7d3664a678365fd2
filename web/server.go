// Package web is livecart's HTTP edge: the JSON API, WHIP/WHEP, the websocket live
// channel and the pages. It checks identity and roles, validates input, and calls the
// cart, stream and live rooms through small interfaces.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/stream"
	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/live"
)

// Options are the HTTP edge's settings.
type Options struct {
	// PublicURL, when set, makes the URLs in Stream absolute (e.g. https://live.example).
	PublicURL string
	// CORSOrigins lists allowed origins; empty or "*" allows any.
	CORSOrigins []string
	// GuestTokens lets a visitor pick a display name and get a viewer token.
	GuestTokens bool
	// RateLimits are off unless set.
	RateLimits RateLimits
	// ICEServers are announced to WHIP/WHEP clients as Link rel="ice-server" headers
	// (e.g. stun:stun.example.net:3478).
	ICEServers []string
	// NodeID names this node; AdvertiseURL returns the base URL other nodes reach it
	// at (cluster.advertise_url). Both are recorded as the origin of the streams
	// published here, so that other nodes pull their media from here. Nil on a
	// single node (embedded store): no origin is recorded.
	NodeID       string
	AdvertiseURL func() string
	// StoreTimeout, when set, bounds how long an /api/ request waits for the store
	// (and the live channel): its context ends then, and a store call still waiting
	// answers 503 unavailable. Zero: no bound beyond the store's own.
	StoreTimeout time.Duration
	// NodeRunning, when set, tells whether a node of the service runs (holds its node
	// id's claim): a stream's origin claim that has gone stale is a dead node's only if
	// that node is not running (ReleaseOrphanedStreams); a running node's renewals
	// may just be late (its store calls wait in a sale storm).
	NodeRunning func(ctx context.Context, nodeID string) (bool, error)
}

// Media is what the HTTP edge needs of the media relay (stream.Relay).
type Media interface {
	// EndStream closes the publisher and every viewer of the stream.
	EndStream(streamID string)
	// CheckOffer tells whether an offer is one the relay takes from the role (its
	// shape, its direction, its number of ICE candidates), else stream.ErrBadOffer.
	CheckOffer(offer string, role stream.Role) error
	// Publish and Subscribe answer a WHIP or WHEP offer; the resource id names the
	// session in its Location.
	Publish(ctx context.Context, streamID, offer string) (answer, resourceID string, err error)
	Subscribe(ctx context.Context, streamID, offer string) (answer, resourceID string, err error)
	// Delete ends a session, Patch applies trickle ICE; Exists tells if it is open.
	Delete(streamID, resourceID string, role stream.Role) error
	Patch(streamID, resourceID string, role stream.Role, frag string) error
	Exists(streamID, resourceID string, role stream.Role) bool
	// SetMute changes the kinds given (nil = unchanged) and returns the new state.
	SetMute(streamID string, audio, video *bool) (audioMuted, videoMuted bool)
	Mute(streamID string) (audioMuted, videoMuted bool)
	// Live tells whether the stream's publisher is on this node.
	Live(streamID string) bool
	// Pulling tells whether this node pulls the stream from the node publishing it.
	Pulling(streamID string) bool
	// PublisherSession is the resource id of the stream's publisher on this node ("" if
	// it has none here).
	PublisherSession(streamID string) string
}

// Presence counts a stream's open websocket connections on all nodes.
type Presence interface {
	Viewers(ctx context.Context, streamID string) int
}

// Deps are the Server's collaborators, wired by hand in cmd/livecart.
type Deps struct {
	Store    cart.Store
	Auth     *auth.Authenticator
	Logger   *slog.Logger
	Now      func() time.Time
	Registry *prometheus.Registry
	Options  Options

	// Commerce is the products, sales, cart and checkout service. Optional: when nil,
	// one is built on Store and Events with the default TTLs (and nothing sweeps
	// expired holds in the background except reads of the cart).
	Commerce *cart.Service
	// Events receives every change viewers must see (the live hub). Optional.
	Events cart.Emitter
	// Media is the WebRTC relay. Optional.
	Media Media
	// Live serves the websocket live channel and keeps mutes (the live hub). Optional.
	Live Live
	// Presence counts viewers. Optional.
	Presence Presence
	// ReadyChecks are run by /readyz besides Store.Ping.
	ReadyChecks []func(context.Context) error
}

// Server is the HTTP edge.
type Server struct {
	deps    Deps
	log     *slog.Logger
	handler http.Handler
	mux     *http.ServeMux

	perIP            *limiterSet
	holdsPerUser     *limiterSet // use with s.allowUser in the hold handler
	checkoutsPerUser *limiterSet // use with s.allowUser in the checkout handler

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// inFlight counts the requests being served, websockets not (InFlight).
	inFlight atomic.Int64
	// routeMetric: the series of requests and latency in use (routeMetrics).
	routeMu     sync.RWMutex
	routeMetric map[routeStatus]*routeMetric
	// commerce counts hold and checkout outcomes by API code (commerce.go).
	commerce *prometheus.CounterVec
	// holdCreated, checkoutCreated, checkoutReplayed: commerce's counters of the
	// successful outcomes (countSuccess).
	holdCreated, checkoutCreated, checkoutReplayed lazyCounter
	// mute follows the stored media mute of streams published here (mediafollow.go).
	mute muteFollowers
	// refusedPublishers: the WHIP sessions OnPublisher refused (media.go).
	refusedPublishers refusals
	// leaves are the publisher leaves the store did not take, retried in the
	// background (streamstatus.go).
	leaves pendingLeaves
}

// New builds the Server and its routes.
func New(deps Deps) *Server {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	s := &Server{deps: deps, log: deps.Logger, routeMetric: map[routeStatus]*routeMetric{}}
	rl := deps.Options.RateLimits
	s.perIP = newLimiterSet(rl.PerIPPerSecond, rl.PerIPBurst)
	s.holdsPerUser = newLimiterSet(rl.HoldsPerUserPerSecond, 0)
	s.checkoutsPerUser = newLimiterSet(rl.CheckoutsPerUserPerSecond, 0)
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livecart_http_requests_total", Help: "HTTP requests by route and status.",
	}, []string{"route", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "livecart_http_request_seconds", Help: "HTTP request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route"})
	deps.Registry.MustRegister(s.requests, s.latency)

	s.mux = http.NewServeMux()
	s.routes(s.mux)
	s.handler = (*rootHandler)(s)
	return s
}

// rootHandler is the Server's handler (Handler).
type rootHandler Server

// ServeHTTP runs a request through the server's layers, in this order: a handler's
// panic answered 500 (recoverPanic), the request metrics (not for websockets: the hub
// measures those), CORS, the per-IP limit, authentication, the store bound, unclean
// paths, then the mux's route (serveLayers). Each layer is a call that returns before
// the route runs, not a handler wrapping the next: a request parked in its route (every
// hold and checkout waits for its store batch) is scanned by the collector at every
// cycle, frame by frame, and a chain of wrapping handlers added two frames per layer
// (its closure and HandlerFunc.ServeHTTP) to each of thousands of them in a sale storm.
func (h *rootHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := (*Server)(h)
	defer s.recoverPanic(w, r)
	if strings.HasPrefix(r.URL.Path, "/ws/") {
		// Websocket upgrades need the raw writer (Hijacker); they are measured by the hub.
		s.serveLayers(w, r, nil)
		return
	}
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	s.serveLayers(sw, r, sw)
	s.countRequest(r, sw, start)
}

// InFlight is the number of HTTP requests being served (parked ones too: every hold
// and checkout waits for its store batch), websockets not counted. The collector's heap
// floor grows with it (cmd/livecart's gcfloor.go).
func (s *Server) InFlight() int { return int(s.inFlight.Load()) }

// serveLayers is ServeHTTP's CORS, per-IP limit, authentication, store bound and
// unclean paths, then the mux; sw (nil for a websocket) records the mux's pattern.
func (s *Server) serveLayers(w http.ResponseWriter, r *http.Request, sw *statusWriter) {
	if s.corsAnswered(w, r) || s.ipLimited(w, r) {
		return
	}
	ctx, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if d := s.deps.Options.StoreTimeout; d > 0 && strings.HasPrefix(r.URL.Path, "/api/") {
		// The store bound: an /api/ request waits for the store (and the live
		// channel) Options.StoreTimeout at most (storeCtx bounds the other calls).
		if ctx == nil {
			ctx = r.Context()
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if ctx != nil {
		r = r.WithContext(ctx) // one copy of the request for both
	}
	if s.uncleanAnswered(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
	if sw != nil {
		sw.route = r.Pattern // the mux's match, for countRequest
	}
}

// Handler returns the root handler.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.deps.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/noop", s.noop)
	// Catch-alls: a path of the API with no route for the method, or none at all, answers
	// with an API error (405 with Allow, or 404) rather than net/http's plain text.
	for _, prefix := range []string{"/api/", "/whip/", "/whep/", "/ws/", "/healthz", "/readyz", "/metrics"} {
		mux.HandleFunc(prefix, s.notFound)
	}
	s.streamRoutes(mux)
	s.mediaRoutes(mux)
	s.commerceRoutes(mux)
	s.liveRoutes(mux)
	s.pageRoutes(mux)
}

// notFound answers API paths (/api/, WHIP, WHEP, /ws/, health) no route takes: an
// OPTIONS request (not a CORS preflight: corsAnswered takes those) 204 with Allow, as
// RFC 9110 §9.3.7 has it and WHIP and WHEP answer theirs; another method 405
// method_not_allowed with Allow when the path has routes for other methods; else 404
// not_found.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	if allow := s.allowedMethods(r); len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		s.fail(w, r, apiError(http.StatusMethodNotAllowed, "method_not_allowed",
			r.Method+" is not allowed here; allowed: "+strings.Join(allow, ", ")))
		return
	}
	s.fail(w, r, apiError(http.StatusNotFound, "not_found", "no such endpoint"))
}

// allowedMethods lists the methods r's path answers (RFC 9110's Allow): those with a
// route (other than the catch-alls, the patterns without a method), HEAD with GET (the
// mux routes HEAD to a GET pattern), and OPTIONS (notFound answers it where a route
// is). None when no route takes the path.
func (s *Server) allowedMethods(r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodPut, http.MethodOptions} {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := s.mux.Handler(probe); strings.Contains(pattern, " ") {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	if len(allow) > 0 && !slices.Contains(allow, http.MethodOptions) {
		allow = append(allow, http.MethodOptions)
	}
	return allow
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := append([]func(context.Context) error{s.deps.Store.Ping}, s.deps.ReadyChecks...)
	for _, check := range checks {
		if err := check(ctx); err != nil {
			// The API's error body (every non-2xx has one), with the status field kept.
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{
				"status": "unavailable",
				"error":  map[string]string{"code": "unavailable", "message": err.Error()},
			})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// noop authenticates and answers 204: the ceiling of HTTP + auth for load tests.
func (s *Server) noop(w http.ResponseWriter, r *http.Request) {
	if _, err := requireUser(r); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// uncleanAnswered answers an API path with an empty or dot segment
// ("/api/streams//end") as an id that is not a UUID, 404 not_found (401 first for an
// anonymous request that needs a token), where net/http's mux would redirect to the
// cleaned path, another endpoint. "/api" and the like, without their slash, too. It
// reports whether it answered. It judges the path as sent, as the mux does: an encoded
// dot (%2E) is part of a segment's value, so "/mutes/%2E%2E" names the user "..", which
// is a user id like any other.
func (s *Server) uncleanAnswered(w http.ResponseWriter, r *http.Request) bool {
	p := r.URL.Path
	if !isAPIPath(p) || isCleanPath(r.URL.EscapedPath()) {
		return false
	}
	anonymousMay := r.Method == http.MethodGet || r.Method == http.MethodHead ||
		r.Method == http.MethodOptions || strings.HasPrefix(p, "/whep/")
	if identity(r).Anonymous() && !anonymousMay {
		s.fail(w, r, apiError(http.StatusUnauthorized, "unauthorized", "sign in required"))
		return true
	}
	s.fail(w, r, apiError(http.StatusNotFound, "not_found", "no such endpoint (an empty or dot path segment)"))
	return true
}

// isAPIPath: under /api/, /whip/, /whep/ or /ws/, or one of those without its slash.
func isAPIPath(p string) bool {
	for _, prefix := range []string{"/api", "/whip", "/whep", "/ws"} {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
	}
	return false
}

// isCleanPath: p has no empty, "." or ".." segment (a trailing slash is fine) and is not
// a bare prefix that the mux would redirect to its subtree.
func isCleanPath(p string) bool {
	switch p {
	case "/api", "/whip", "/whep", "/ws":
		return false
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// storeCtx bounds store calls made outside the /api/ routes' bound (serveLayers gives
// /api/ requests a context that ends after Options.StoreTimeout: a store, or live
// channel, that does not answer costs a request that long at most): the
// WHIP, WHEP and websocket requests' (their sessions outlive the request, so its
// context is not bounded) and the relay's publisher callbacks'. A store that does not
// answer costs Options.StoreTimeout at most, then the call fails with the context's
// deadline (503 unavailable with Retry-After on a request).
func (s *Server) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if d := s.deps.Options.StoreTimeout; d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}

// emit hands an event to the live channel, if one is wired.
func (s *Server) emit(ctx context.Context, ev cart.Event) {
	if s.deps.Events != nil {
		s.deps.Events.Emit(ctx, ev)
	}
}

// tryEmitter is an Emitter that tells when it refused an event (live.Hub.TryEmit).
type tryEmitter interface {
	TryEmit(ctx context.Context, ev cart.Event) error
}

// emitChecked hands an event that is not the stream's state and that no action
// precedes (an announce) to the live channel; an error (live.ErrBacklog, a
// cart.ErrUnavailable: its events wait for Redis and their queue is full) means it was
// not taken, and the request is answered unavailable. (A mute or chat deletion takes
// its place first: reserveEmit.)
func (s *Server) emitChecked(ctx context.Context, ev cart.Event) error {
	if te, ok := s.deps.Events.(tryEmitter); ok {
		return te.TryEmit(ctx, ev)
	}
	s.emit(ctx, ev)
	return nil
}

// emitReserver is an Emitter that takes a place for an event before the action that
// makes it (live.Hub.Reserve).
type emitReserver interface {
	Reserve(ev cart.Event) (*live.Reservation, error)
}

// reservedEmit is an event whose place in the live channel is taken (reserveEmit).
type reservedEmit struct {
	s   *Server
	ev  cart.Event
	res *live.Reservation // nil: the Emitter takes every event (Server.emit)
}

// reserveEmit takes a place in the live channel for ev, an event that is not the
// stream's state (a mute, a chat deletion: nothing re-derives them), before the action
// that makes it is done. An error (live.ErrBacklog, a cart.ErrUnavailable: the
// stream's events wait for Redis and their queue is full) refuses the action: answered
// unavailable with nothing done, no audit entry written, so that its retry is done and
// audited once. The caller then either emits (the action is done) or cancels (it
// failed).
func (s *Server) reserveEmit(ev cart.Event) (reservedEmit, error) {
	r := reservedEmit{s: s, ev: ev}
	if er, ok := s.deps.Events.(emitReserver); ok {
		res, err := er.Reserve(ev)
		if err != nil {
			return r, err
		}
		r.res = res
	}
	return r, nil
}

// emit sends the reserved event: never refused.
func (r reservedEmit) emit(ctx context.Context) {
	if r.res != nil {
		r.res.Emit(ctx)
		return
	}
	r.s.emit(ctx, r.ev)
}

// cancel gives the place back (the action failed); after emit it does nothing.
func (r reservedEmit) cancel() {
	if r.res != nil {
		r.res.Cancel()
	}
}

// authenticate returns the request's context with the caller's identity (nil: r's
// own context, no token presented), or ok false once it answered a presented but
// invalid token 401, except on WHIP where the bearer may be a stream key.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (ctx context.Context, ok bool) {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics": // need no token; a stale one is ignored
		return nil, true
	}
	token := ""
	if hs := r.Header["Authorization"]; len(hs) > 1 {
		// Not a list field (RFC 9110 §11.6.2): which credentials count is anyone's guess
		// (a proxy adding its own, say), so neither does.
		s.fail(w, r, apiError(http.StatusUnauthorized, "unauthorized", "more than one Authorization header"))
		return nil, false
	} else if len(hs) == 1 && hs[0] != "" {
		// The scheme is case-insensitive (RFC 9110 §11.1).
		scheme, t, _ := strings.Cut(hs[0], " ")
		token = strings.TrimSpace(t)
		switch {
		case !strings.EqualFold(scheme, "Bearer"):
			s.fail(w, r, apiError(http.StatusUnauthorized, "unauthorized", "Authorization must be Bearer"))
			return nil, false
		case token == "":
			// "Bearer $TOKEN" with $TOKEN unset: say so, not that the scheme is wrong.
			s.fail(w, r, apiError(http.StatusUnauthorized, "unauthorized", "the Bearer token is empty"))
			return nil, false
		}
	} else if strings.HasPrefix(r.URL.Path, "/ws/") {
		token = r.URL.Query().Get("token")
	}
	if token == "" {
		return nil, true
	}
	ctx = context.WithValue(r.Context(), bearerKey, token)
	id, until, err := s.deps.Auth.VerifyUntil(token)
	if err != nil && !strings.HasPrefix(r.URL.Path, "/whip/") {
		s.fail(w, r, err)
		return nil, false
	}
	if err == nil {
		ctx = context.WithValue(ctx, identityKey, verified{id, until})
	}
	return ctx, true
}

// corsAnswered sets the CORS headers for allowed origins and answers preflights,
// reporting whether it answered. WHIP/WHEP OPTIONS go to their handlers, which add the
// ICE server Link headers. A preflight from an origin not allowed is answered 403
// forbidden, naming the setting (the mux would answer it 405, as if the path took no
// preflight).
func (s *Server) corsAnswered(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	if !s.originAllowed(origin) {
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			s.fail(w, r, errForbidden("origin "+origin+" is not allowed: http.cors_origins does not list it"))
			return true
		}
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Retry-After")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key, If-Match")
		h.Set("Access-Control-Max-Age", "600")
		if !strings.HasPrefix(r.URL.Path, "/whip/") && !strings.HasPrefix(r.URL.Path, "/whep/") {
			w.WriteHeader(http.StatusNoContent)
			return true
		}
	}
	return false
}

func (s *Server) originAllowed(origin string) bool {
	list := s.deps.Options.CORSOrigins
	if len(list) == 0 {
		return true
	}
	for _, o := range list {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// statusWriter records the status for metrics. It passes Hijack and Flush through
// (websockets, streaming).
type statusWriter struct {
	http.ResponseWriter
	status int
	// route is the pattern the mux served the request with (serveLayers sets
	// it), "" when the mux did not serve it.
	route string
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countRequest records a request sw answered (rootHandler) in the request metrics.
func (s *Server) countRequest(r *http.Request, sw *statusWriter, start time.Time) {
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	route := sw.route
	if route == "" {
		// Answered before the mux (401, 429, a preflight, an unclean path): the
		// route it would have taken, as before.
		_, route = s.mux.Handler(r)
	}
	if route == "" {
		route = "unmatched"
	}
	m := s.routeMetrics(route, sw.status)
	m.requests.Inc()
	m.latency.Observe(time.Since(start).Seconds())
}

// routeStatus names a series of Server.requests.
type routeStatus struct {
	route  string
	status int
}

// routeMetric is a route's request counter for one status and its latency observer.
type routeMetric struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// routeMetrics returns the counter and observer of route and status, looked up in the
// vectors once (each lookup there hashes the label values, and the status is
// formatted): every request counts. Routes and statuses are few (the mux's patterns).
func (s *Server) routeMetrics(route string, status int) *routeMetric {
	k := routeStatus{route, status}
	s.routeMu.RLock()
	m := s.routeMetric[k]
	s.routeMu.RUnlock()
	if m != nil {
		return m
	}
	m = &routeMetric{requests: s.requests.WithLabelValues(route, strconv.Itoa(status)), latency: s.latency.WithLabelValues(route)}
	s.routeMu.Lock()
	if old := s.routeMetric[k]; old != nil {
		m = old
	} else {
		s.routeMetric[k] = m
	}
	s.routeMu.Unlock()
	return m
}

// recoverPanic, deferred by rootHandler, answers a handler's panic 500 internal and logs
// it; http.ErrAbortHandler goes on up (net/http aborts the response).
func (s *Server) recoverPanic(w http.ResponseWriter, r *http.Request) {
	if v := recover(); v != nil {
		if v == http.ErrAbortHandler {
			panic(v)
		}
		s.log.Error("panic in handler", "method", r.Method, "path", r.URL.Path, "panic", v)
		s.fail(w, r, apiError(http.StatusInternalServerError, "internal", "internal error"))
	}
}
