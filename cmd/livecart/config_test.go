package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DataDir != "./data" || c.Store != "embedded" || c.Media.UDPPort != 8443 ||
		c.Cart.HoldTTL != 10*time.Minute || c.Cart.SaleHoldTTL != 2*time.Minute || c.Live.Writers != runtime.GOMAXPROCS(0) ||
		c.Redis.RequestTimeout != 3*time.Second || c.Redis.PingTimeout != 500*time.Millisecond {
		t.Fatalf("got %+v, want the documented defaults", c)
	}
}

func TestConfigViewerGCMOnly(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want bool
	}{{"media:\n  udp_port: 9443\n", false}, {"media:\n  viewer_gcm_only: true\n", true}} {
		c, err := loadConfig(writeFile(t, tc.yaml), env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if c.Media.ViewerGCMOnly != tc.want {
			t.Errorf("%q: viewer_gcm_only = %v, want %v", tc.yaml, c.Media.ViewerGCMOnly, tc.want)
		}
	}
}

func TestConfigUnknownKeyRejected(t *testing.T) {
	_, err := loadConfig(writeFile(t, "addr: 127.0.0.1:9000\ncart:\n  hold_tll: 5m\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "hold_tll") {
		t.Fatalf("got %v, want an error naming the unknown key hold_tll", err)
	}
}

func TestConfigEnvOverridesFile(t *testing.T) {
	p := writeFile(t, "addr: 127.0.0.1:9000\nstore: embedded\ncart:\n  hold_ttl: 5m\nmedia:\n  udp_port: 9443\n")
	c, err := loadConfig(p, env(map[string]string{
		"LIVECART_ADDR": "127.0.0.1:9100", "LIVECART_HOLD_TTL": "30s", "LIVECART_UDP_PORT": "9555",
		"LIVECART_STORE": "redis", "LIVECART_REDIS_URL": "redis://127.0.0.1:6379/3", "LIVECART_PUBLIC_IP": "127.0.0.1",
		"LIVECART_NODE_ID": "n1", "LIVECART_SALE_HOLD_TTL": "90s", "LIVECART_DATA_DIR": "/tmp/x",
		"LIVECART_PUBLIC_URL": "https://live.example", "LIVECART_AUTH_SECRET": "0123456789abcdef0123",
		"LIVECART_LIVE_WRITERS": "3", "LIVECART_ADVERTISE_URL": "http://10.0.0.7:9100",
		"LIVECART_REDIS_PING_TIMEOUT": "250ms",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{}
	want.Addr, want.Store, want.NodeID, want.DataDir, want.PublicURL = "127.0.0.1:9100", "redis", "n1", "/tmp/x", "https://live.example"
	if c.Addr != want.Addr || c.Store != want.Store || c.NodeID != want.NodeID || c.DataDir != want.DataDir || c.PublicURL != want.PublicURL {
		t.Fatalf("got %+v, want env values", c)
	}
	if c.Cart.HoldTTL != 30*time.Second || c.Cart.SaleHoldTTL != 90*time.Second || c.Media.UDPPort != 9555 ||
		c.Redis.URL != "redis://127.0.0.1:6379/3" || c.Media.PublicIP != "127.0.0.1" || c.Auth.Secret != "0123456789abcdef0123" || c.Live.Writers != 3 ||
		c.Cluster.AdvertiseURL != "http://10.0.0.7:9100" || c.Redis.PingTimeout != 250*time.Millisecond {
		t.Fatalf("got %+v, want env values", c)
	}
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		file string
		want string
	}{
		{"bad addr", map[string]string{"LIVECART_ADDR": "nope"}, "", "addr"},
		{"bad store", map[string]string{"LIVECART_STORE": "postgres"}, "", "store"},
		{"bad duration", map[string]string{"LIVECART_HOLD_TTL": "ten minutes"}, "", "LIVECART_HOLD_TTL"},
		{"bad port", map[string]string{"LIVECART_UDP_PORT": "70000"}, "", "udp_port"},
		{"bad ip", map[string]string{"LIVECART_PUBLIC_IP": "example.com"}, "", "public_ip"},
		{"short secret", map[string]string{"LIVECART_AUTH_SECRET": "short"}, "", "secret"},
		{"bad public url", map[string]string{"LIVECART_PUBLIC_URL": "ftp://x"}, "", "public_url"},
		{"bad yaml type", nil, "cart:\n  max_pins: many\n", "line 2"},
		{"no products per stream", nil, "cart:\n  max_products_per_stream: 0\n", "max_products_per_stream 0"},
		{"too many products per stream", nil, "cart:\n  max_products_per_stream: 100001\n", "max_products_per_stream 100001"},
		{"no sales per stream", nil, "cart:\n  max_sales_per_stream: -1\n", "max_sales_per_stream -1"},
		{"too many sales per stream", nil, "cart:\n  max_sales_per_stream: 1000000\n", "max_sales_per_stream 1000000"},
		{"writers not a number", map[string]string{"LIVECART_LIVE_WRITERS": "four"}, "", "LIVECART_LIVE_WRITERS"},
		{"no writers", map[string]string{"LIVECART_LIVE_WRITERS": "0"}, "", "live writers 0"},
		{"too many writers", nil, "live:\n  writers: 5000\n", "live writers 5000"},
		{"negative heap floor", nil, "gc:\n  heap_floor_mib: -1\n", "gc heap_floor_mib -1"},
		{"heap floor too large", map[string]string{"LIVECART_GC_HEAP_FLOOR_MIB": "20000"}, "", "gc heap_floor_mib 20000"},
		{"heap floor not a number", map[string]string{"LIVECART_GC_HEAP_FLOOR_MIB": "64MiB"}, "", "LIVECART_GC_HEAP_FLOOR_MIB"},
		{"advertise url scheme", map[string]string{"LIVECART_ADVERTISE_URL": "10.0.0.7:8080"}, "", "advertise_url"},
		{"advertise url unspecified host", nil, "cluster:\n  advertise_url: http://0.0.0.0:8080\n", "advertise_url"},
		{"ping timeout too long", map[string]string{"LIVECART_STORE": "redis", "LIVECART_REDIS_PING_TIMEOUT": "5s"}, "", "ping_timeout"},
		{"node id with a space", map[string]string{"LIVECART_NODE_ID": "node a"}, "", `node_id "node a"`},
		{"node id with a slash", nil, "node_id: eu/1\n", `node_id "eu/1"`},
		{"node id not ASCII", map[string]string{"LIVECART_NODE_ID": "nœud"}, "", "node_id"},
		{"node id with a control character", map[string]string{"LIVECART_NODE_ID": "a\x00b"}, "", "node_id"},
		{"node id too long", map[string]string{"LIVECART_NODE_ID": strings.Repeat("n", 65)}, "", "node_id"},
		{"advertise url query", map[string]string{"LIVECART_ADVERTISE_URL": "http://a:1/?x=1"}, "", "advertise_url"},
		{"no ICE candidates", nil, "media:\n  max_ice_candidates: 0\n", "max_ice_candidates 0"},
		{"too many ICE candidates", nil, "media:\n  max_ice_candidates: 5000\n", "max_ice_candidates 5000"},
		{"negative per-IP rate", nil, "rate_limits:\n  per_ip_per_second: -5\n", "rate_limits"},
		{"negative per-IP burst", nil, "rate_limits:\n  per_ip_per_second: 5\n  per_ip_burst: -1\n", "rate_limits"},
		{"negative hold rate", nil, "rate_limits:\n  holds_per_user_per_second: -1\n", "rate_limits"},
		{"negative checkout rate", nil, "rate_limits:\n  checkouts_per_user_per_second: -0.5\n", "rate_limits"},
		// Origins no browser sends, so never matched (they were taken and allowed nothing).
		{"cors origin with a trailing slash", nil, "http:\n  cors_origins: [\"https://shop.example/\"]\n", `http cors_origins "https://shop.example/"`},
		{"cors origin without a scheme", nil, "http:\n  cors_origins: [\"*\", \"shop.example\"]\n", `http cors_origins "shop.example"`},
		{"cors origin with a path", nil, "http:\n  cors_origins: [\"https://shop.example/app\"]\n", "cors_origins"},
		{"cors origin with a wildcard", nil, "http:\n  cors_origins: [\"https://*.shop.example\"]\n", "cors_origins"},
		{"cors origin with a query", nil, "http:\n  cors_origins: [\"https://shop.example?x=1\"]\n", "cors_origins"},
		{"cors origin empty", nil, "http:\n  cors_origins: [\"\"]\n", "cors_origins"},
		{"websocket origin with a trailing slash", nil, "live:\n  allowed_origins: [\"https://shop.example/\"]\n", `live allowed_origins "https://shop.example/"`},
		{"websocket origin with a user", nil, "live:\n  allowed_origins: [\"https://me@shop.example\"]\n", "allowed_origins"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := ""
			if c.file != "" {
				path = writeFile(t, c.file)
			}
			_, err := loadConfig(path, env(c.env))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

// TestConfigOriginsTaken: the origin lists take what browsers send (scheme://host[:port],
// any scheme: an app's webview sends capacitor://localhost), "*" and "null", in any case.
func TestConfigOriginsTaken(t *testing.T) {
	list := `["*", "null", "https://shop.example", "http://127.0.0.1:8080", "HTTPS://Shop.Example:8443", "capacitor://localhost", "https://[::1]:443"]`
	c, err := loadConfig(writeFile(t, "http:\n  cors_origins: "+list+"\nlive:\n  allowed_origins: "+list+"\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.HTTP.CORSOrigins) != 7 || len(c.Live.AllowedOrigins) != 7 {
		t.Fatalf("got %q and %q, want the 7 origins in both", c.HTTP.CORSOrigins, c.Live.AllowedOrigins)
	}
}

func TestExampleConfigsLoad(t *testing.T) {
	for _, name := range []string{"livecart.yaml", "node-a.yaml", "node-b.yaml"} {
		if _, err := loadConfig(filepath.Join("..", "..", "configs", name), env(nil)); err != nil {
			t.Errorf("configs/%s: %v", name, err)
		}
	}
}

func TestAdvertiseURL(t *testing.T) {
	host := func() (string, error) { return "box7", nil }
	cases := []struct{ configured, addr, want string }{
		{"", "127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"", "[::1]:8080", "http://[::1]:8080"},
		{"", "0.0.0.0:8081", "http://box7:8081"},
		{"", ":8082", "http://box7:8082"},
		{"https://node-a.internal:8443/", "0.0.0.0:8081", "https://node-a.internal:8443"},
	}
	for _, c := range cases {
		if got := advertiseURL(c.configured, c.addr, host); got != c.want {
			t.Errorf("advertiseURL(%q, %q): got %q, want %q", c.configured, c.addr, got, c.want)
		}
	}
}

// TestExampleNodeConfigsFollowTheirAddress: a third node started from node-b.yaml with
// only its address changed in the environment (LIVECART_ADDR) advertises that address
// to the other nodes, not node-b's: the examples leave advertise_url to its default.
func TestExampleNodeConfigsFollowTheirAddress(t *testing.T) {
	for _, name := range []string{"node-a.yaml", "node-b.yaml"} {
		cfg, err := loadConfig(filepath.Join("..", "..", "configs", name), env(map[string]string{"LIVECART_ADDR": "10.0.0.3:9000"}))
		if err != nil {
			t.Fatal(err)
		}
		if got := advertiseURL(cfg.Cluster.AdvertiseURL, cfg.Addr, os.Hostname); got != "http://10.0.0.3:9000" {
			t.Errorf("configs/%s with LIVECART_ADDR=10.0.0.3:9000 advertises %q, want http://10.0.0.3:9000", name, got)
		}
	}
}

// TestNodeID: node_id takes 1..64 letters, digits, '.', '_' and '-' (the validation
// cases refuse the others); the default (host-pid) is always one of those.
func TestNodeID(t *testing.T) {
	for _, id := range []string{"node-a", "n", "eu-west-1.pod_7", strings.Repeat("n", 64)} {
		c, err := loadConfig("", env(map[string]string{"LIVECART_NODE_ID": id}))
		if err != nil || c.NodeID != id {
			t.Errorf("node_id %q: got %q, %v; want it taken", id, c.NodeID, err)
		}
	}
	for _, tc := range []struct {
		host string
		pid  int
		want string
	}{
		{"web-1.example.com", 4242, "web-1.example.com-4242"},
		{"", 7, "livecart-7"},
		{"my host/é", 9, "my_host___-9"},
		{strings.Repeat("h", 64), 4194304, strings.Repeat("h", 56) + "-4194304"},
	} {
		got := defaultNodeID(tc.host, tc.pid)
		if got != tc.want || !validNodeID(got) {
			t.Errorf("defaultNodeID(%q, %d) = %q (valid %v), want %q, valid", tc.host, tc.pid, got, validNodeID(got), tc.want)
		}
	}
}

// TestStreamBoundsConfig: cart.max_products_per_stream and max_sales_per_stream default to
// the service's bounds (1,000 and 500) and are taken from the file.
func TestStreamBoundsConfig(t *testing.T) {
	c, err := loadConfig("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cart.MaxProductsPerStream != 1000 || c.Cart.MaxSalesPerStream != 500 {
		t.Fatalf("defaults: got %d products and %d sales, want 1000 and 500", c.Cart.MaxProductsPerStream, c.Cart.MaxSalesPerStream)
	}
	c, err = loadConfig(writeFile(t, "cart:\n  max_products_per_stream: 40\n  max_sales_per_stream: 7\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cart.MaxProductsPerStream != 40 || c.Cart.MaxSalesPerStream != 7 {
		t.Fatalf("from the file: got %d products and %d sales, want 40 and 7", c.Cart.MaxProductsPerStream, c.Cart.MaxSalesPerStream)
	}
}
