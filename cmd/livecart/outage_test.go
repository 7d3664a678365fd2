package main

import (
	"context"
	"fmt"
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

// freeTCPPort is a loopback port nothing listens on now (so that parallel test runs on
// one machine do not share a private redis-server).
func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
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
	port := freeTCPPort(t)
	start, kill := privateRedis(t, port)
	base := "http://" + startMain(t, "server", redisConfig(t, fmt.Sprintf("redis://127.0.0.1:%d/0", port), "outage")).Addr()
	creator, buyer := mint(t, auth.RoleCreator, "alice"), mint(t, auth.RoleViewer, "bob")
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
	wantUnavailable(t, "hold while Redis is down", hold())
	if got := readyz(base); got != 503 {
		t.Fatalf("readyz while Redis is down: got %d, want 503", got)
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
	if got := readyz(base); got != 200 {
		t.Fatalf("readyz after recovery: got %d, want 200", got)
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
	port := freeTCPPort(t)
	start, _ := unstartedRedis(t, port)
	base := "http://" + startMain(t, "server", redisConfig(t, fmt.Sprintf("redis://127.0.0.1:%d/0", port), "late")).Addr()
	creator, buyer := mint(t, auth.RoleCreator, "alice"), mint(t, auth.RoleViewer, "bob")
	r, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("readyz while Redis is down: got %d Retry-After %q, want 503 with Retry-After", r.StatusCode, r.Header.Get("Retry-After"))
	}
	wantUnavailable(t, "create stream while Redis is down", postJSON(t, base+"/api/streams", creator, map[string]string{"title": "late"}))

	start()
	deadline := time.Now().Add(15 * time.Second)
	for readyz(base) != 200 {
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
