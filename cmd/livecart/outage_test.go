package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/livecart/livecart/web/auth"
)

// privateRedis runs its own redis-server on a loopback port with an AOF fsynced on
// every write, so acknowledged writes survive a SIGKILL.
func privateRedis(t *testing.T, port int) (start, kill func()) {
	t.Helper()
	start, kill = unstartedRedis(t, port)
	start()
	return start, kill
}

// unstartedRedis is privateRedis without starting it: the test calls start.
func unstartedRedis(t *testing.T, port int) (start, kill func()) {
	t.Helper()
	dir := t.TempDir()
	var cmd *exec.Cmd
	start = func() {
		cmd = exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--dir", dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
		if err := cmd.Start(); err != nil {
			t.Fatalf("redis-server: %v", err)
		}
		rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
		defer rdb.Close()
		for i := 0; rdb.Ping(context.Background()).Err() != nil; i++ {
			if i > 100 {
				t.Fatal("private redis-server did not answer")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	kill = func() {
		if cmd == nil {
			return
		}
		cmd.Process.Kill()
		cmd.Wait()
		cmd = nil
	}
	t.Cleanup(func() { kill() })
	return start, kill
}

// TestRedisOutageAnswersUnavailableAndRecovers: while the store's Redis is down, a hold
// gets 503 unavailable with Retry-After and /readyz is 503; when Redis is back the same
// node serves again by itself and every acknowledged order is still there.
func TestRedisOutageAnswersUnavailableAndRecovers(t *testing.T) {
	const port = 16391
	start, kill := privateRedis(t, port)
	cfg := defaultConfig()
	cfg.Addr, cfg.Store, cfg.Auth.Secret = "127.0.0.1:0", "redis", clusterSecret
	cfg.Redis.URL = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	cfg.Redis.Prefix = "outage"
	cfg.DataDir, cfg.Media.UDPPort, cfg.Log.Level = t.TempDir(), freeUDPPort(t), "error"
	ctx, cancel := context.WithCancel(context.Background())
	m, err := NewMain(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done; m.Close() }()
	var base string
	for base == "" {
		if a := m.Addr(); a != "" {
			base = "http://" + a
		}
		time.Sleep(5 * time.Millisecond)
	}
	mint := func(role auth.Role, user string) string {
		tok, _ := auth.New([]byte(clusterSecret), nil).Mint(auth.Identity{UserID: user, Role: role}, time.Hour)
		return tok
	}
	creator, buyer := mint(auth.RoleCreator, "alice"), mint(auth.RoleViewer, "bob")
	var st, p struct{ ID string }
	call(t, "POST", base+"/api/streams", creator, map[string]string{"title": "outage"}, 201, &st)
	call(t, "POST", base+"/api/streams/"+st.ID+"/products", creator, map[string]any{
		"sku": "S", "title": "T", "price_cents": 100, "currency": "USD", "stock": 5}, 201, &p)
	call(t, "POST", base+"/api/cart/items", buyer, map[string]any{"product_id": p.ID, "quantity": 1}, 201, nil)
	var order struct{ ID string }
	call(t, "POST", base+"/api/checkout", buyer, map[string]any{}, 201, &order)

	kill()
	hold := func() *http.Response {
		return postJSON(t, base+"/api/cart/items", buyer, map[string]any{"product_id": p.ID, "quantity": 1})
	}
	resp := hold()
	var body struct{ Error struct{ Code string } }
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 503 || body.Error.Code != "unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("hold while Redis is down: got %d %q Retry-After %q, want 503 unavailable with Retry-After",
			resp.StatusCode, body.Error.Code, resp.Header.Get("Retry-After"))
	}
	if r, err := http.Get(base + "/readyz"); err != nil || r.StatusCode != 503 {
		t.Fatalf("readyz while Redis is down: got %v %v, want 503", r.StatusCode, err)
	}

	start()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp := hold()
		resp.Body.Close()
		if resp.StatusCode == 201 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hold after Redis came back: still %d after 15 s", resp.StatusCode)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r, err := http.Get(base + "/readyz"); err != nil || r.StatusCode != 200 {
		t.Fatalf("readyz after recovery: got %v %v, want 200", r.StatusCode, err)
	}
	var orders []struct{ ID string }
	call(t, "GET", base+"/api/orders", buyer, nil, 200, &orders)
	if len(orders) != 1 || orders[0].ID != order.ID {
		t.Fatalf("got orders %+v after the outage, want the acknowledged %s", orders, order.ID)
	}
	var products []struct{ Stock, Held, Sold int }
	call(t, "GET", base+"/api/streams/"+st.ID+"/products", "", nil, 200, &products)
	if len(products) != 1 || products[0].Stock+products[0].Held+products[0].Sold != 5 || products[0].Sold != 1 {
		t.Fatalf("got %+v, want stock+held+sold = 5 with 1 sold", products)
	}
}

// TestStartsWhileRedisIsDown: the binary starts although its Redis does not answer,
// answers /readyz and store calls with 503 unavailable (Retry-After) meanwhile, and
// serves by itself once Redis is up, without a restart.
func TestStartsWhileRedisIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	start, _ := unstartedRedis(t, port)
	cfg := defaultConfig()
	cfg.Addr, cfg.Store, cfg.Auth.Secret = "127.0.0.1:0", "redis", clusterSecret
	cfg.Redis.URL = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	cfg.Redis.Prefix = "late"
	cfg.DataDir, cfg.Media.UDPPort, cfg.Log.Level = t.TempDir(), freeUDPPort(t), "error"
	ctx, cancel := context.WithCancel(context.Background())
	m, err := NewMain(ctx, cfg, io.Discard)
	if err != nil {
		cancel()
		t.Fatalf("NewMain while Redis is down: got %v, want it to start", err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done; m.Close() }()
	var base string
	for base == "" {
		if a := m.Addr(); a != "" {
			base = "http://" + a
		}
		time.Sleep(5 * time.Millisecond)
	}
	mint := func(role auth.Role, user string) string {
		tok, _ := auth.New([]byte(clusterSecret), nil).Mint(auth.Identity{UserID: user, Role: role}, time.Hour)
		return tok
	}
	creator, buyer := mint(auth.RoleCreator, "alice"), mint(auth.RoleViewer, "bob")
	if r, err := http.Get(base + "/readyz"); err != nil || r.StatusCode != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("readyz while Redis is down: got %v %v, want 503 with Retry-After", r.StatusCode, err)
	}
	resp := postJSON(t, base+"/api/streams", creator, map[string]string{"title": "late"})
	var body struct{ Error struct{ Code string } }
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 503 || body.Error.Code != "unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("create stream while Redis is down: got %d %q Retry-After %q, want 503 unavailable with Retry-After",
			resp.StatusCode, body.Error.Code, resp.Header.Get("Retry-After"))
	}

	start()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := http.Get(base + "/readyz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz after Redis came up: still not 200 after 15 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var st, p struct{ ID string }
	call(t, "POST", base+"/api/streams", creator, map[string]string{"title": "late"}, 201, &st)
	call(t, "POST", base+"/api/streams/"+st.ID+"/products", creator, map[string]any{
		"sku": "S", "title": "T", "price_cents": 100, "currency": "USD", "stock": 5}, 201, &p)
	call(t, "POST", base+"/api/cart/items", buyer, map[string]any{"product_id": p.ID, "quantity": 2}, 201, nil)
	var order struct {
		ID         string
		TotalCents int `json:"total_cents"`
	}
	call(t, "POST", base+"/api/checkout", buyer, map[string]any{}, 201, &order)
	if order.TotalCents != 200 {
		t.Fatalf("order after Redis came up: got total %d, want 200", order.TotalCents)
	}
}
