package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/stream"
	"github.com/livecart/livecart/web"
	"github.com/livecart/livecart/web/auth"
)

// Main is the running server: every part wired by hand, started by Run, released by Close.
type Main struct {
	cfg   Config
	log   *slog.Logger
	out   io.Writer
	auth  *auth.Authenticator
	store cart.Store
	// commerce runs the sale clock and the expired-hold sweeper (Run).
	commerce *cart.Service
	web      *web.Server
	httpSrv  *http.Server

	mu sync.Mutex
	ln net.Listener // guarded by mu; set once Run listens

	printLinks bool
	// nodeRunningFunc tells whether a node of the service runs (on Redis; nodeclaim.go).
	nodeRunningFunc func(ctx context.Context, nodeID string) (bool, error)
	closers         []func() error // run in reverse order by Close
}

// NewMain builds every part from cfg. Nothing listens until Run.
func NewMain(ctx context.Context, cfg Config, out io.Writer) (*Main, error) {
	m := &Main{cfg: cfg, out: out, log: newLogger(cfg, out)}
	if cfg.NodeID == "" {
		host, _ := os.Hostname()
		m.cfg.NodeID = defaultNodeID(host, os.Getpid())
	}
	if err := m.build(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func newLogger(cfg Config, out io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

func (m *Main) build(ctx context.Context) error {
	secret, fromDataDir, err := loadSecret(m.cfg, true)
	if err != nil {
		return err
	}
	m.printLinks = fromDataDir
	m.auth = auth.New(secret, nil)
	switch {
	case m.cfg.Auth.Secret == exampleSecret:
		m.log.Warn("auth.secret is the example configs' placeholder, which anyone can read: anyone can mint admin tokens; set a long random secret (the same on every node)")
	case fromDataDir && m.cfg.Store == "redis":
		m.log.Warn("auth secret made in this node's data dir: every node on this Redis must share it, else tokens minted with one are refused (401) by the others; set auth.secret or LIVECART_AUTH_SECRET, the same on every node",
			"path", filepath.Join(m.cfg.DataDir, "secret"))
	}

	if m.store, err = m.openStore(ctx); err != nil {
		return err
	}
	m.closers = append(m.closers, m.store.Close)
	if m.cfg.Store == "embedded" {
		if err := m.idleUnpublishedStreams(ctx); err != nil {
			return err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	deps := web.Deps{
		Store:    m.store,
		Auth:     m.auth,
		Logger:   m.log,
		Registry: reg,
		Options: web.Options{
			PublicURL:   m.cfg.PublicURL,
			CORSOrigins: m.cfg.HTTP.CORSOrigins,
			GuestTokens: m.cfg.GuestTokens,
			RateLimits: web.RateLimits{
				PerIPPerSecond:            m.cfg.RateLimits.PerIPPerSecond,
				PerIPBurst:                m.cfg.RateLimits.PerIPBurst,
				HoldsPerUserPerSecond:     m.cfg.RateLimits.HoldsPerUserPerSecond,
				CheckoutsPerUserPerSecond: m.cfg.RateLimits.CheckoutsPerUserPerSecond,
			},
		},
	}
	hub, err := m.buildLive(ctx, reg)
	if err != nil {
		return err
	}
	deps.Events, deps.Live, deps.Presence = hub, hub, hub
	// After deps.Events is set: the commerce service emits through it.
	m.commerce = cart.NewService(m.store, deps.Events, cart.ServiceConfig{
		HoldTTL: m.cfg.Cart.HoldTTL, SaleHoldTTL: m.cfg.Cart.SaleHoldTTL, MaxPins: m.cfg.Cart.MaxPins,
		MaxProducts: m.cfg.Cart.MaxProductsPerStream, MaxSales: m.cfg.Cart.MaxSalesPerStream,
	}, time.Now, m.log)
	deps.Commerce = m.commerce
	// The relay reports publishers to the web server, which is built after it.
	var srv atomic.Pointer[web.Server]
	// Closed after the relay (whose Close reports its publishers' leaves) and before
	// the store: it stops the retries of leaves the store did not take.
	m.closers = append(m.closers, func() error {
		if s := srv.Load(); s != nil {
			s.Close()
		}
		return nil
	})
	relay, err := m.buildMedia(reg, func(sid, session string, live bool) {
		if s := srv.Load(); s != nil {
			s.OnPublisher(sid, session, live)
		}
	}, func(sid string, up bool) {
		if s := srv.Load(); s != nil {
			s.OnUpstream(sid, up)
		}
	})
	if err != nil {
		return err
	}
	deps.Media = relay
	deps.Options.ICEServers = m.cfg.Media.ICEServers
	if m.cfg.Store == "redis" { // nodes share streams: each records the ones published on it
		deps.Options.NodeID, deps.Options.AdvertiseURL = m.cfg.NodeID, m.advertiseURL
		deps.Options.StoreTimeout = m.cfg.Redis.RequestTimeout
		deps.Options.NodeRunning = m.nodeRunningFunc
	}
	m.web = web.New(deps)
	srv.Store(m.web)
	m.httpSrv = &http.Server{
		Handler:           m.web.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// A request's line and headers (net/http's default is 1 MiB): a token of
		// that size (a forged one too) is a full HMAC per request and a name of
		// hundreds of kilobytes; a real request's are a few kilobytes.
		MaxHeaderBytes: maxHeaderBytes,
		// The whole request, body too. (A handler still running then has its context
		// cancelled by net/http's background read: API requests end within
		// redis.request_timeout, WHIP and WHEP within a few seconds.)
		ReadTimeout: m.cfg.HTTP.ReadTimeout,
		IdleTimeout: 120 * time.Second,
		ErrorLog:    slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// maxHeaderBytes bounds a request's line and headers (net/http adds 4 KiB of slack and
// answers 431 beyond).
const maxHeaderBytes = 64 << 10

// buildMedia opens the WebRTC relay on the configured UDP port. It listens on the HTTP
// listen host; ICE candidates carry public_ip when set.
//
// With the Redis store, nodes share streams: a stream published on another node is
// pulled from there for the viewers here (the relay's cascade, via web.Cascade).
func (m *Main) buildMedia(reg prometheus.Registerer, onPublisher func(string, string, bool), onUpstream func(string, bool)) (*stream.Relay, error) {
	host, _, _ := net.SplitHostPort(m.cfg.Addr)
	if ip := net.ParseIP(host); ip == nil {
		host = "" // a name or empty: every interface
	}
	opts := stream.Options{
		UDPPort: m.cfg.Media.UDPPort, ListenIP: host, PublicIP: m.cfg.Media.PublicIP,
		Logger: m.log, Baseline: m.cfg.Media.Baseline, OnPublisher: onPublisher, Registerer: reg,
		ViewerGCMOnly: m.cfg.Media.ViewerGCMOnly, MaxRemoteCandidates: m.cfg.Media.MaxICECandidates,
	}
	if m.cfg.Store == "redis" {
		opts.Upstream, opts.OnUpstream = web.NewCascade(m.store, m.cfg.NodeID, nil), onUpstream
	}
	relay, err := stream.New(opts)
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	m.closers = append(m.closers, relay.Close)
	return relay, nil
}

func (m *Main) openStore(ctx context.Context) (cart.Store, error) {
	switch m.cfg.Store {
	case "embedded":
		if err := os.MkdirAll(m.cfg.DataDir, 0o700); err != nil {
			return nil, err
		}
		return cart.OpenBoltLog(filepath.Join(m.cfg.DataDir, "livecart.db"), m.log)
	case "redis":
		redis.SetLogger(redisLogger{m.log})
		st, err := cart.OpenRedis(ctx, m.cfg.Redis.URL, cart.RedisOptions{Prefix: m.cfg.Redis.Prefix, PingTimeout: m.cfg.Redis.PingTimeout,
			ClientName: redisClientName(m.cfg.NodeID, "store")})
		if err != nil {
			return nil, err
		}
		// Start anyway when Redis is down: /readyz and the store's calls answer 503
		// until it is up, and the store serves by itself from then on.
		if err := st.Ping(ctx); err != nil {
			m.log.Warn("redis does not answer; serving 503 until it does", "url", redactURL(m.cfg.Redis.URL), "err", err)
		}
		return st, nil
	default:
		return nil, fmt.Errorf("store %q is not available in this build", m.cfg.Store)
	}
}

// idleUnpublishedStreams records idle every stream the embedded store has live. This
// process is the only node on its data and its relay is new, so none has a publisher:
// they were live when an earlier process was killed (kill -9, a crash, power loss)
// before their publishers' leaves were recorded, and would stay live for ever, with no
// media, until a publisher came and left again.
func (m *Main) idleUnpublishedStreams(ctx context.Context) error {
	streams, err := m.store.ListStreams(ctx)
	if err != nil {
		return err
	}
	for _, st := range streams {
		if st.Status != cart.StreamLive {
			continue
		}
		if _, _, err := m.store.SetStreamLive(ctx, st.ID, "", false, time.Now()); err != nil {
			return fmt.Errorf("record stream %s idle: %w", st.ID, err)
		}
		m.log.Info("stream idle: its publisher was lost with the previous process", "stream", st.ID)
	}
	return nil
}

// sweepStopWait bounds how long shutdown waits for the hold and sale sweep to stop.
const sweepStopWait = 500 * time.Millisecond

// Run listens and serves until ctx is cancelled, then drains gracefully.
func (m *Main) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", m.cfg.Addr)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.ln = ln
	m.mu.Unlock()
	m.log.Info("livecart listening", "addr", ln.Addr().String(), "store", m.cfg.Store,
		"node", m.cfg.NodeID, "udp_port", m.cfg.Media.UDPPort)
	if m.printLinks {
		if err := m.printBanner(ctx); err != nil {
			m.log.Warn("banner", "err", err)
		}
	}
	sweepCtx, stopSweep := context.WithCancel(ctx)
	sweepDone := make(chan struct{})
	go func() { defer close(sweepDone); m.commerce.Run(sweepCtx) }()
	orphansDone := make(chan struct{})
	go func() { defer close(orphansDone); m.web.ReleaseOrphanedStreams(sweepCtx) }()
	defer func() {
		stopSweep()
		// A sweep stuck in a call to a Redis that does not answer is not waited for:
		// Close closes the store's client next, which ends the call.
		select {
		case <-sweepDone:
		case <-time.After(sweepStopWait):
			m.log.Warn("shutting down: hold sweep still in a store call; not waiting")
		}
		select {
		case <-orphansDone:
		case <-time.After(sweepStopWait):
			m.log.Warn("shutting down: the look for orphaned live streams still in a store call; not waiting")
		}
	}()
	errc := make(chan error, 1)
	// One read(2) less per request whose handler parks (every hold and checkout): see
	// web.LazyBackgroundReads.
	go func() { errc <- m.httpSrv.Serve(web.LazyBackgroundReads(m.httpSrv, ln)) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	m.log.Info("shutting down", "timeout", m.cfg.HTTP.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), m.cfg.HTTP.ShutdownTimeout)
	defer cancel()
	if err := m.httpSrv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// advertiseURL is the base URL other nodes reach this one at (cluster.advertise_url,
// by default the address it listens on).
func (m *Main) advertiseURL() string {
	addr := m.Addr()
	if addr == "" {
		addr = m.cfg.Addr
	}
	return advertiseURL(m.cfg.Cluster.AdvertiseURL, addr, os.Hostname)
}

// Addr is the HTTP listen address once Run has started.
func (m *Main) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ln == nil {
		return ""
	}
	return m.ln.Addr().String()
}

// Close releases every part, last built first.
func (m *Main) Close() error {
	var errs []error
	for i := len(m.closers) - 1; i >= 0; i-- {
		errs = append(errs, m.closers[i]())
	}
	m.closers = nil
	return errors.Join(errs...)
}

// printBanner prints ready-to-open links with tokens for a demo stream, creating one
// when no stream is open yet.
func (m *Main) printBanner(ctx context.Context) error {
	streams, err := m.store.ListStreams(ctx)
	if err != nil {
		return err
	}
	var st cart.Stream
	if len(streams) > 0 {
		st = streams[0]
	} else {
		st = cart.Stream{ID: uuid.NewString(), Title: "My first live sale", CreatorID: "creator-1",
			Status: cart.StreamIdle, StreamKey: "sk_" + uuid.NewString(), CreatedAt: time.Now().UTC()}
		if err := m.store.CreateStream(ctx, st); err != nil {
			return err
		}
	}
	mint := func(user, name string, role auth.Role) string {
		t, _ := m.auth.Mint(auth.Identity{UserID: user, Name: name, Role: role}, 24*time.Hour)
		return t
	}
	base := m.cfg.PublicURL
	if base == "" {
		base = "http://" + m.Addr()
	}
	fmt.Fprintf(m.out, "\nlivecart is ready. Open (tokens valid 24 h):\n")
	fmt.Fprintf(m.out, "  studio   %s/studio/%s?token=%s\n", base, st.ID, mint(st.CreatorID, "Creator", auth.RoleCreator))
	fmt.Fprintf(m.out, "  watch    %s/watch/%s?token=%s\n", base, st.ID, mint("viewer-"+uuid.NewString()[:8], "Viewer", auth.RoleViewer))
	fmt.Fprintf(m.out, "  moderate %s/moderate/%s?token=%s\n", base, st.ID, mint("moderator-1", "Moderator", auth.RoleModerator))
	fmt.Fprintf(m.out, "  OBS      WHIP URL %s/whip/%s  bearer token (stream key) %s\n\n", base, st.ID, st.StreamKey)
	return nil
}
