package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/livecart/livecart/web/auth"
)

const clusterSecret = "cluster-test-secret-0123456789"

// startMain runs a real Main with cfg until the test ends (the test fails if it does not
// stop cleanly) and returns it once it listens.
func startMain(t *testing.T, name string, cfg Config) *Main {
	t.Helper()
	m, _ := runMain(t, name, cfg)
	return m
}

// runMain runs a real Main with cfg until stop is called or the test ends (stop waits for
// it to end, fails the test if it does not end cleanly, and closes it; a second call does
// nothing), and returns it once it listens.
func runMain(t *testing.T, name string, cfg Config) (m *Main, stop func()) {
	t.Helper()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m, err := NewMain(ctx, cfg, io.Discard)
	if err != nil {
		cancel()
		t.Fatalf("%s: NewMain: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s run: %v", name, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("%s did not stop within 15 s", name)
		}
		m.Close()
	}
	t.Cleanup(stop)
	for range 1000 {
		if m.Addr() != "" {
			return m, stop
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not listen within 10 s", name)
	return nil, nil
}

// testConfig is the default config on loopback with a free HTTP and UDP port, its own
// data dir and quiet logs.
func testConfig(t *testing.T) Config {
	cfg := defaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Media.UDPPort = freeUDPPort(t)
	cfg.Log.Level = "warn"
	return cfg
}

// redisConfig is testConfig on the Redis at url with the given key prefix and the
// cluster tests' secret. Its request timeout is 1 s (the default is 3 s): the outage
// tests bound their answers by it.
func redisConfig(t *testing.T, url, prefix string) Config {
	cfg := testConfig(t)
	cfg.Store, cfg.Redis.URL, cfg.Redis.Prefix = "redis", url, prefix
	cfg.Redis.RequestTimeout = time.Second
	cfg.Auth.Secret = clusterSecret
	return cfg
}

// startNode runs a real Main on the shared Redis with the given key prefix and returns
// its base URL.
func startNode(t *testing.T, name, prefix string) string {
	t.Helper()
	cfg := redisConfig(t, "redis://127.0.0.1:6379/0", prefix)
	cfg.NodeID = name
	return "http://" + startMain(t, "node "+name, cfg).Addr()
}

// mint signs a token for user (named user) with the cluster tests' secret.
func mint(t *testing.T, role auth.Role, user string) string {
	tok, err := auth.New([]byte(clusterSecret), nil).Mint(auth.Identity{UserID: user, Name: user, Role: role}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wantUnavailable fails the test unless resp is 503 unavailable with Retry-After and a
// message that tells the client nothing of the servers behind (Redis's address and
// error, which it did: "redis: dial tcp 127.0.0.1:6379: connect: connection refused:
// store unavailable"); it closes the body.
func wantUnavailable(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string }
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 503 || body.Error.Code != "unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%s: got %d %q Retry-After %q, want 503 unavailable with Retry-After",
			what, resp.StatusCode, body.Error.Code, resp.Header.Get("Retry-After"))
	}
	if m := body.Error.Message; m == "" || strings.Contains(m, "127.0.0.1") || strings.Contains(m, "redis") || strings.Contains(m, "dial") {
		t.Fatalf("%s: got message %q, want one naming no server, address or driver error", what, m)
	}
}

// readyz is the status of GET /readyz (0 when the request fails).
func readyz(base string) int {
	r, err := http.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	r.Body.Close()
	return r.StatusCode
}

func cleanupPrefix(t *testing.T, prefix string) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		rdb.Close()
	})
}

// apiRequest builds a request to the API: body (nil: none) as JSON, token (empty:
// none) as the bearer.
func apiRequest(method, url, token string, body any) *http.Request {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, url, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

func call(t *testing.T, method, url, token string, body any, want int, out any) {
	t.Helper()
	req := apiRequest(method, url, token, body)
	if method == "POST" && strings.HasSuffix(url, "/checkout") {
		req.Header.Set("Idempotency-Key", uuid.NewString())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: got %d %s, want %d", method, url, resp.StatusCode, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatal(err)
		}
	}
}

// postJSON posts body as JSON and returns the response for the caller to judge (call
// fails the test on an unexpected status; some tests expect one of several).
func postJSON(t *testing.T, url, token string, body any) *http.Response {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

type frame struct {
	Type    string          `json:"type"`
	Seq     int64           `json:"seq"`
	Viewers int             `json:"viewers"`
	Count   int             `json:"count"`
	Text    string          `json:"text"`
	Product json.RawMessage `json:"product"`
	SaleID  string          `json:"sale_id"`
	// ProductID is an unpin's (and a stock event's) product.
	ProductID string `json:"product_id"`
	// Stream is a stream event's stream.
	Stream json.RawMessage `json:"stream"`
	Remain *int            `json:"remaining"`
	Sale   struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"sale"`
}

func dialWS(t *testing.T, base, sid, token string) *websocket.Conn {
	t.Helper()
	url := strings.Replace(base, "http://", "ws://", 1) + "/ws/" + sid
	if token != "" {
		url += "?token=" + token
	}
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next reads frames until one of type typ arrives (skipping viewers/stock noise).
func next(t *testing.T, c *websocket.Conn, typ string) frame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, raw, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		var f frame
		if err := json.Unmarshal(raw, &f); err != nil {
			t.Fatal(err)
		}
		if f.Type == typ {
			return f
		}
	}
}

// TestTwoNodesOneService: two real servers on one Redis are one service. A viewer on B
// sees pins, stock and chat made through A with the same seq as a viewer on A; holds
// and orders made on one node are visible on the other; no unit is sold twice across
// nodes.
func TestTwoNodesOneService(t *testing.T) {
	prefix := fmt.Sprintf("lc-cluster-%s", uuid.NewString()[:8])
	cleanupPrefix(t, prefix)
	a := startNode(t, "node-a", prefix)
	b := startNode(t, "node-b", prefix)

	creator := mint(t, auth.RoleCreator, "alice")

	var st struct{ ID string }
	call(t, "POST", a+"/api/streams", creator, map[string]string{"title": "cluster"}, 201, &st)
	var onB struct{ ID, Status string }
	call(t, "GET", b+"/api/streams/"+st.ID, "", nil, 200, &onB)
	if onB.ID != st.ID {
		t.Fatalf("node B got stream %q, want %q", onB.ID, st.ID)
	}

	wa := dialWS(t, a, st.ID, "")
	wb := dialWS(t, b, st.ID, mint(t, auth.RoleViewer, "bob"))
	snapA, snapB := next(t, wa, "snapshot"), next(t, wb, "snapshot")
	if snapA.Seq != snapB.Seq {
		t.Fatalf("snapshot seq: A %d, B %d, want equal", snapA.Seq, snapB.Seq)
	}
	// Viewers count connections on all nodes.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var s struct{ Viewers int }
		call(t, "GET", a+"/api/streams/"+st.ID, "", nil, 200, &s)
		if s.Viewers == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got viewers %d on A, want 2 (one per node)", s.Viewers)
		}
		time.Sleep(100 * time.Millisecond)
	}

	var p struct{ ID string }
	call(t, "POST", a+"/api/streams/"+st.ID+"/products", creator, map[string]any{
		"sku": "SKU-1", "title": "Sneaker", "price_cents": 9900, "currency": "EUR", "stock": 10}, 201, &p)
	call(t, "POST", a+"/api/streams/"+st.ID+"/pins", creator, map[string]string{"product_id": p.ID}, 200, nil)
	pinA, pinB := next(t, wa, "pin"), next(t, wb, "pin")
	if pinA.Seq != pinB.Seq || !strings.Contains(string(pinB.Product), p.ID) {
		t.Fatalf("pin: A seq %d, B seq %d product %s; want the same event", pinA.Seq, pinB.Seq, pinB.Product)
	}

	// Chat sent through B reaches the viewer on A.
	if err := wb.WriteJSON(map[string]string{"type": "chat", "text": "hello from B"}); err != nil {
		t.Fatal(err)
	}
	if f := next(t, wa, "chat"); f.Text != "hello from B" {
		t.Fatalf("got chat %q on A, want hello from B", f.Text)
	}

	// A flash sale of 3 units; 6 buyers alternate nodes: exactly 3 holds, the rest sold_out.
	var sale struct{ ID string }
	call(t, "POST", a+"/api/streams/"+st.ID+"/sales", creator, map[string]any{
		"product_id": p.ID, "price_cents": 4900, "quantity": 3, "duration_s": 60}, 201, &sale)
	held := 0
	for i := range 6 {
		node := a
		if i%2 == 1 {
			node = b
		}
		buyer := mint(t, auth.RoleViewer, fmt.Sprintf("buyer-%d", i))
		resp := postJSON(t, node+"/api/cart/items", buyer, map[string]any{"sale_id": sale.ID, "quantity": 1})
		resp.Body.Close()
		switch resp.StatusCode {
		case 201:
			held++
			// Check out on the other node.
			other := b
			if node == b {
				other = a
			}
			call(t, "POST", other+"/api/checkout", buyer, map[string]any{}, 201, nil)
		case 409:
		default:
			t.Fatalf("hold %d: got %d", i, resp.StatusCode)
		}
	}
	if held != 3 {
		t.Fatalf("got %d holds across nodes, want 3", held)
	}
	var sales []struct {
		ID                              string
		Remaining, Held, Sold, Quantity int
	}
	call(t, "GET", b+"/api/streams/"+st.ID+"/sales", "", nil, 200, &sales)
	if len(sales) != 1 || sales[0].Sold != 3 || sales[0].Remaining != 0 || sales[0].Held != 0 {
		t.Fatalf("got sales %+v on B, want 3 sold, 0 remaining", sales)
	}
	// The final stock value reaches the viewer on B.
	deadline = time.Now().Add(5 * time.Second)
	for {
		f := next(t, wb, "stock")
		if f.Remain != nil && *f.Remain == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("viewer on B never saw remaining 0")
		}
	}
	var orders []json.RawMessage
	call(t, "GET", b+"/api/streams/"+st.ID+"/orders", creator, nil, 200, &orders)
	if len(orders) != 3 {
		t.Fatalf("got %d orders on B, want 3", len(orders))
	}
}
