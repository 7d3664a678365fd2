package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/stream"
)

// Config is every setting of the server. Defaults come from defaultConfig, then the YAML
// file (strict: unknown keys are errors), then the environment, which wins; validate
// checks it once before anything is built.
type Config struct {
	Addr      string `yaml:"addr"`
	PublicURL string `yaml:"public_url"`
	DataDir   string `yaml:"data_dir"`
	NodeID    string `yaml:"node_id"`
	Store     string `yaml:"store"` // embedded | redis

	Redis struct {
		URL    string `yaml:"url"`
		Prefix string `yaml:"prefix"`
		// PingTimeout bounds /readyz's ping of a Redis that does not answer (500ms).
		PingTimeout time.Duration `yaml:"ping_timeout"`
		// RequestTimeout bounds how long an API request waits for Redis (3s): then it
		// answers 503 unavailable with Retry-After. It is a bound for a Redis that
		// stopped answering (a refused connection answers 503 at once), so it must
		// exceed what a request waits in a healthy storm: on 2 cores a 5,000-buyer
		// storm's slowest store waits come near 1 s, and 1 s answered some 503.
		RequestTimeout time.Duration `yaml:"request_timeout"`
	} `yaml:"redis"`

	Cluster struct {
		// AdvertiseURL is the base URL other nodes reach this one at (they pull the
		// media of streams published here with WHEP to it). Default: http:// and the
		// listen address (the host name when it listens on every interface).
		AdvertiseURL string `yaml:"advertise_url"`
	} `yaml:"cluster"`

	Auth struct {
		Secret string `yaml:"secret"`
	} `yaml:"auth"`

	Cart struct {
		HoldTTL     time.Duration `yaml:"hold_ttl"`
		SaleHoldTTL time.Duration `yaml:"sale_hold_ttl"`
		MaxPins     int           `yaml:"max_pins"`
		// MaxProductsPerStream and MaxSalesPerStream bound a stream's products (hidden
		// ones too) and sales (ended ones too): one more is refused with 409 conflict.
		MaxProductsPerStream int `yaml:"max_products_per_stream"`
		MaxSalesPerStream    int `yaml:"max_sales_per_stream"`
	} `yaml:"cart"`

	Media struct {
		UDPPort  int    `yaml:"udp_port"`
		PublicIP string `yaml:"public_ip"`
		Baseline bool   `yaml:"baseline"` // plain pion fan-out, for comparison
		// ViewerGCMOnly offers WHEP viewers AES-128-GCM SRTP only: browsers then use it
		// instead of AES-CM/HMAC-SHA1-80, about 5 times dearer per packet for the relay.
		ViewerGCMOnly bool     `yaml:"viewer_gcm_only"`
		ICEServers    []string `yaml:"ice_servers"`
		// MaxICECandidates bounds the distinct remote ICE candidates one WHIP or WHEP
		// session may give, in its offer and trickle PATCHes together (50): the relay
		// checks every one, so a made-up list would aim it at others' addresses.
		MaxICECandidates int `yaml:"max_ice_candidates"`
	} `yaml:"media"`

	Live struct {
		ChatPerSecond  float64  `yaml:"chat_per_second"`
		ChatBurst      int      `yaml:"chat_burst"`
		AllowedOrigins []string `yaml:"allowed_origins"` // websocket Origin check; empty = any
		// Writers is the number of writer shards that send the events to the websockets
		// (default GOMAXPROCS: one per core the process may use).
		Writers int `yaml:"writers"`
		// EmitQueueMax and EmitQueueBytes bound, per stream, the events waiting for a
		// slow or down Redis to publish them (1024 events, 1 MiB; live.Config).
		EmitQueueMax   int `yaml:"emit_queue_max"`
		EmitQueueBytes int `yaml:"emit_queue_bytes"`
	} `yaml:"live"`

	HTTP struct {
		CORSOrigins     []string      `yaml:"cors_origins"`
		ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
		// ReadTimeout bounds reading a request, headers and body (30s): a client that
		// stops sending half-way is cut off. Websockets set their own deadlines.
		ReadTimeout time.Duration `yaml:"read_timeout"`
	} `yaml:"http"`

	RateLimits struct {
		PerIPPerSecond            float64 `yaml:"per_ip_per_second"` // 0 = off
		PerIPBurst                int     `yaml:"per_ip_burst"`
		HoldsPerUserPerSecond     float64 `yaml:"holds_per_user_per_second"`
		CheckoutsPerUserPerSecond float64 `yaml:"checkouts_per_user_per_second"`
	} `yaml:"rate_limits"`

	GuestTokens bool `yaml:"guest_tokens"`

	GC struct {
		// HeapFloorMiB keeps the collector's next heap goal at least this many MiB above
		// the live heap (gcfloor.go): fewer collections while the live heap is small, as
		// in a sale storm; none changed once GOGC's own headroom is larger. 0 = off.
		HeapFloorMiB int `yaml:"heap_floor_mib"`
	} `yaml:"gc"`

	Log struct {
		Level  string `yaml:"level"`  // debug | info | warn | error
		Format string `yaml:"format"` // text | json
	} `yaml:"log"`
}

// maxPerStream bounds cart.max_products_per_stream and max_sales_per_stream: every
// viewer's page lists the products, and every websocket connect's snapshot carries all
// the sales (5,000 of them made a 1.74 MB snapshot).
const maxPerStream = 100_000

// maxICECandidates bounds media.max_ice_candidates: far above any real peer's.
const maxICECandidates = 1000

// maxHeapFloorMiB bounds gc.heap_floor_mib: 16 GiB of heap the collector leaves
// uncollected is more than any node of this service should hold.
const maxHeapFloorMiB = 16 << 10

// maxLiveWriters bounds live.writers: a shard per core is the point; far more only
// adds idle goroutines and wake-ups.
const maxLiveWriters = 1024

func defaultConfig() Config {
	var c Config
	c.Addr = "127.0.0.1:8080"
	c.DataDir = "./data"
	c.Store = "embedded"
	c.Redis.URL = "redis://127.0.0.1:6379/0"
	c.Redis.Prefix = "livecart"
	c.Redis.PingTimeout = 500 * time.Millisecond
	c.Redis.RequestTimeout = 3 * time.Second
	c.Cart.HoldTTL = 10 * time.Minute
	c.Cart.SaleHoldTTL = 2 * time.Minute
	c.Cart.MaxPins = 5
	c.Cart.MaxProductsPerStream = cart.DefaultMaxProducts
	c.Cart.MaxSalesPerStream = cart.DefaultMaxSales
	c.Media.UDPPort = 8443
	c.Media.MaxICECandidates = stream.DefaultMaxRemoteCandidates
	c.Live.ChatPerSecond = 1
	c.Live.ChatBurst = 5
	c.Live.Writers = runtime.GOMAXPROCS(0)
	c.Live.EmitQueueMax = 1024
	c.Live.EmitQueueBytes = 1 << 20
	c.HTTP.ShutdownTimeout = 10 * time.Second
	c.HTTP.ReadTimeout = 30 * time.Second
	c.GC.HeapFloorMiB = defaultHeapFloorMiB
	c.Log.Level = "info"
	c.Log.Format = "text"
	return c
}

// loadConfig builds the Config from defaults, the optional YAML file and env.
func loadConfig(path string, getenv func(string) string) (Config, error) {
	c := defaultConfig()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(&c, getenv); err != nil {
		return c, err
	}
	return c, c.validate()
}

func applyEnv(c *Config, getenv func(string) string) error {
	str := map[string]*string{
		"LIVECART_ADDR":          &c.Addr,
		"LIVECART_PUBLIC_URL":    &c.PublicURL,
		"LIVECART_AUTH_SECRET":   &c.Auth.Secret,
		"LIVECART_DATA_DIR":      &c.DataDir,
		"LIVECART_STORE":         &c.Store,
		"LIVECART_REDIS_URL":     &c.Redis.URL,
		"LIVECART_PUBLIC_IP":     &c.Media.PublicIP,
		"LIVECART_NODE_ID":       &c.NodeID,
		"LIVECART_ADVERTISE_URL": &c.Cluster.AdvertiseURL,
	}
	for k, p := range str {
		if v := getenv(k); v != "" {
			*p = v
		}
	}
	dur := map[string]*time.Duration{
		"LIVECART_HOLD_TTL":              &c.Cart.HoldTTL,
		"LIVECART_SALE_HOLD_TTL":         &c.Cart.SaleHoldTTL,
		"LIVECART_REDIS_PING_TIMEOUT":    &c.Redis.PingTimeout,
		"LIVECART_REDIS_REQUEST_TIMEOUT": &c.Redis.RequestTimeout,
		"LIVECART_HTTP_READ_TIMEOUT":     &c.HTTP.ReadTimeout,
	}
	for k, p := range dur {
		if v := getenv(k); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%s: %q is not a Go duration (e.g. 10m)", k, v)
			}
			*p = d
		}
	}
	if v := getenv("LIVECART_UDP_PORT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("LIVECART_UDP_PORT: %q is not a port number", v)
		}
		c.Media.UDPPort = n
	}
	if v := getenv("LIVECART_GC_HEAP_FLOOR_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("LIVECART_GC_HEAP_FLOOR_MIB: %q is not a whole number of MiB", v)
		}
		c.GC.HeapFloorMiB = n
	}
	if v := getenv("LIVECART_LIVE_WRITERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("LIVECART_LIVE_WRITERS: %q is not a whole number", v)
		}
		c.Live.Writers = n
	}
	return nil
}

func (c Config) validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr %q: want host:port", c.Addr))
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("public_url %q: want http(s)://host[:port]", c.PublicURL))
		}
	}
	for _, l := range []struct {
		setting string
		list    []string
	}{{"http cors_origins", c.HTTP.CORSOrigins}, {"live allowed_origins", c.Live.AllowedOrigins}} {
		if err := checkOrigins(l.setting, l.list); err != nil {
			errs = append(errs, err)
		}
	}
	if c.NodeID != "" && !validNodeID(c.NodeID) {
		errs = append(errs, fmt.Errorf("node_id %q: want 1..%d characters, each a letter, digit, '.', '_' or '-' (unique per node)", c.NodeID, maxNodeIDLen))
	}
	if c.Cluster.AdvertiseURL != "" {
		if err := checkAdvertiseURL(c.Cluster.AdvertiseURL); err != nil {
			errs = append(errs, err)
		}
	}
	switch c.Store {
	case "embedded":
		if c.DataDir == "" {
			errs = append(errs, errors.New("data_dir must be set for the embedded store"))
		}
	case "redis":
		if u, err := url.Parse(c.Redis.URL); err != nil || u.Scheme != "redis" {
			errs = append(errs, fmt.Errorf("redis url %q: want redis://host:port/db", c.Redis.URL))
		}
		if c.Redis.PingTimeout < time.Millisecond || c.Redis.PingTimeout > 2*time.Second {
			errs = append(errs, fmt.Errorf("redis ping_timeout %v: want 1ms..2s (/readyz waits 2 s at most)", c.Redis.PingTimeout))
		}
		if c.Redis.RequestTimeout < 10*time.Millisecond || c.Redis.RequestTimeout > time.Minute {
			errs = append(errs, fmt.Errorf("redis request_timeout %v: want 10ms..1m", c.Redis.RequestTimeout))
		}
	default:
		errs = append(errs, fmt.Errorf("store %q: want embedded or redis", c.Store))
	}
	if c.Auth.Secret != "" && len(c.Auth.Secret) < 16 {
		errs = append(errs, errors.New("auth secret must be at least 16 characters"))
	}
	if c.Cart.HoldTTL < time.Second || c.Cart.SaleHoldTTL < time.Second {
		errs = append(errs, errors.New("cart hold_ttl and sale_hold_ttl must be at least 1s"))
	}
	if c.Cart.MaxPins < 1 || c.Cart.MaxPins > 50 {
		errs = append(errs, fmt.Errorf("cart max_pins %d: want 1..50", c.Cart.MaxPins))
	}
	if c.Cart.MaxProductsPerStream < 1 || c.Cart.MaxProductsPerStream > maxPerStream {
		errs = append(errs, fmt.Errorf("cart max_products_per_stream %d: want 1..%d", c.Cart.MaxProductsPerStream, maxPerStream))
	}
	if c.Cart.MaxSalesPerStream < 1 || c.Cart.MaxSalesPerStream > maxPerStream {
		errs = append(errs, fmt.Errorf("cart max_sales_per_stream %d: want 1..%d", c.Cart.MaxSalesPerStream, maxPerStream))
	}
	if c.Media.UDPPort < 1 || c.Media.UDPPort > 65535 {
		errs = append(errs, fmt.Errorf("media udp_port %d: want 1..65535", c.Media.UDPPort))
	}
	if c.Media.MaxICECandidates < 1 || c.Media.MaxICECandidates > maxICECandidates {
		errs = append(errs, fmt.Errorf("media max_ice_candidates %d: want 1..%d", c.Media.MaxICECandidates, maxICECandidates))
	}
	if c.Media.PublicIP != "" && net.ParseIP(c.Media.PublicIP) == nil {
		errs = append(errs, fmt.Errorf("media public_ip %q is not an IP address", c.Media.PublicIP))
	}
	if c.Live.ChatPerSecond <= 0 || c.Live.ChatBurst < 1 {
		errs = append(errs, errors.New("live chat_per_second must be > 0 and chat_burst ≥ 1"))
	}
	if c.Live.Writers < 1 || c.Live.Writers > maxLiveWriters {
		errs = append(errs, fmt.Errorf("live writers %d: want 1..%d", c.Live.Writers, maxLiveWriters))
	}
	if c.Live.EmitQueueMax < 1 || c.Live.EmitQueueMax > 1<<20 || c.Live.EmitQueueBytes < 1<<10 || c.Live.EmitQueueBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("live emit_queue_max %d, emit_queue_bytes %d: want 1..1048576 and 1 KiB..1 GiB", c.Live.EmitQueueMax, c.Live.EmitQueueBytes))
	}
	if r := c.RateLimits; r.PerIPPerSecond < 0 || r.PerIPBurst < 0 || r.HoldsPerUserPerSecond < 0 || r.CheckoutsPerUserPerSecond < 0 {
		// A negative limit was taken as 0, off, without a word.
		errs = append(errs, errors.New("rate_limits: want 0 (off) or more for each"))
	}
	if c.HTTP.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("http shutdown_timeout must be positive"))
	}
	if c.HTTP.ReadTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("http read_timeout %v: want at least 100ms", c.HTTP.ReadTimeout))
	}
	if c.GC.HeapFloorMiB < 0 || c.GC.HeapFloorMiB > maxHeapFloorMiB {
		errs = append(errs, fmt.Errorf("gc heap_floor_mib %d: want 0 (off)..%d", c.GC.HeapFloorMiB, maxHeapFloorMiB))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log level %q: want debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log format %q: want text or json", c.Log.Format))
	}
	return errors.Join(errs...)
}

// checkOrigins refuses the entries of an origin list (http.cors_origins,
// live.allowed_origins) that no browser's Origin header can equal, so never allow
// anything: a browser sends scheme://host[:port], without a path (not even the "/" a
// pasted URL ends with), query, fragment or user, and has no wildcards. "*" allows any
// origin, and "null" is the origin a sandboxed or local page sends.
func checkOrigins(setting string, list []string) error {
	var bad []string
	for _, o := range list {
		if !validOrigin(o) {
			bad = append(bad, strconv.Quote(o))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%s %s: want an origin as a browser sends it, scheme://host[:port] "+
		"(no path, not even a trailing /), or \"*\" for any", setting, strings.Join(bad, ", "))
}

// validOrigin: "*", "null", or scheme://host[:port] and nothing else.
func validOrigin(o string) bool {
	if o == "*" || o == "null" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Scheme != "" && u.Host != "" && u.Opaque == "" && u.User == nil &&
		u.Path == "" && u.RawPath == "" && !u.ForceQuery && u.RawQuery == "" && u.Fragment == "" &&
		!strings.ContainsAny(o, "*# \t") && strings.EqualFold(u.Scheme+"://"+u.Host, o)
}

// maxNodeIDLen bounds node_id (ASCII, so bytes and characters alike).
const maxNodeIDLen = 64

// validNodeID: 1..maxNodeIDLen ASCII letters, digits, '.', '_' and '-'. The id names
// the node in Redis (its viewer counts' hash field, its media origin, its connections'
// client name, which Redis refuses with a space or a non-ASCII byte), in logs and in
// the conflict answered when a stream is published on another node.
func validNodeID(id string) bool {
	if id == "" || len(id) > maxNodeIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !nodeIDByte(id[i]) {
			return false
		}
	}
	return true
}

func nodeIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// defaultNodeID is the node id when none is configured: host-pid, a valid one (host's
// other bytes become '_', and it is cut to fit; an empty host is "livecart").
func defaultNodeID(host string, pid int) string {
	suffix := "-" + strconv.Itoa(pid)
	if host == "" {
		host = "livecart"
	}
	b := []byte(host)
	for i, c := range b {
		if !nodeIDByte(c) {
			b[i] = '_'
		}
	}
	if n := maxNodeIDLen - len(suffix); len(b) > n {
		b = b[:n]
	}
	return string(b) + suffix
}

// checkAdvertiseURL: http(s)://host[:port][/path], a host other nodes can dial (not
// an unspecified address), no query or fragment.
func checkAdvertiseURL(raw string) error {
	u, err := url.Parse(raw)
	bad := err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil
	if !bad {
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("cluster advertise_url %q: want http(s)://host[:port] that other nodes can reach", raw)
	}
	return nil
}

// advertiseURL is the configured cluster.advertise_url or, by default, http:// and
// addr (the listen address), with the host name in place of an unspecified host.
func advertiseURL(configured, addr string, hostname func() (string, error)) string {
	if configured != "" {
		return strings.TrimRight(configured, "/")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if h, err := hostname(); err == nil && h != "" {
			host = h
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}
