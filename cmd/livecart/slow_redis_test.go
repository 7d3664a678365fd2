package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/web/auth"
)

// timedPost posts body (JSON) with the given headers and returns the status, the error
// code, whether Retry-After was set, and how long the answer took.
func timedRequest(t *testing.T, method, url, token string, body any, header map[string]string) (int, string, bool, time.Duration) {
	t.Helper()
	req := apiRequest(method, url, token, body)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return 0, "", false, time.Since(start)
	}
	defer resp.Body.Close()
	var e struct{ Error struct{ Code string } }
	json.NewDecoder(resp.Body).Decode(&e)
	took := time.Since(start)
	t.Logf("%s %s answered %d after %v", method, url, resp.StatusCode, took.Round(time.Millisecond)) // how near the bounds (go test -v)
	return resp.StatusCode, e.Error.Code, resp.Header.Get("Retry-After") != "", took
}

// startStallingServer starts a server on a private Redis (freezableRedis, key prefix
// prefix-<8 hex>) reached through a tripProxy that stalls Redis (SIGSTOP) at the first
// command match picks: that command and all later ones wait for thaw (SIGCONT).
func startStallingServer(t *testing.T, prefix string, match func(cmd [][]byte) bool) (base string, proxy *tripProxy, thaw func()) {
	t.Helper()
	srv, addr := freezableRedis(t)
	proxy = newTripProxy(t, addr, match, func() { srv.Process.Signal(sigStop) })
	base = "http://" + startMain(t, "server", redisConfig(t, "redis://"+proxy.addr+"/0", prefix+"-"+uuid.NewString()[:8])).Addr()
	return base, proxy, func() { srv.Process.Signal(sigCont) }
}

// checkoutWithKey checks out token's cart through base with the given Idempotency-Key
// and returns the status and the order's id.
func checkoutWithKey(t *testing.T, base, token, key string) (int, string) {
	t.Helper()
	req := apiRequest("POST", base+"/api/checkout", token, map[string]any{})
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var order struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&order)
	return resp.StatusCode, order.ID
}

// frozenAnswerWithin bounds every answer while Redis is frozen: the store's request
// timeout (redis.request_timeout, 1 s in redisConfig) and some slack for a loaded machine.
const frozenAnswerWithin = 1500 * time.Millisecond

// TestFrozenRedisAnswersQuicklyAndRecovers: Redis freezes (SIGSTOP) right when a pin
// request publishes its live event, the stream's events being published one at a
// time. Meanwhile every request answers within the bound: the pin 200 (its change is
// in), store calls on that stream and on another 503 unavailable with Retry-After,
// a checkout too. After the thaw the node serves again by itself, the checkout retried
// with the same Idempotency-Key gets one order (never two), the order acknowledged
// before is still there, and the viewer gets the pin event and the next one in order.
// (Before: the pin request held the stream's emitter for the whole freeze and the
// other requests waited out Redis's 3 s read timeout.)
func TestFrozenRedisAnswersQuicklyAndRecovers(t *testing.T) {
	var armed atomic.Pointer[string] // the stream whose next pin event freezes Redis
	base, proxy, thaw := startStallingServer(t, "lc-slow", func(cmd [][]byte) bool {
		keys, args, ok := scriptCall(cmd)
		sid := armed.Load()
		return ok && sid != nil && len(keys) > 0 && len(args) > 0 &&
			bytes.Contains(keys[0], []byte(":live:{"+*sid+"}:seq")) && bytes.Equal(args[0], []byte(`"pin"`))
	})

	creator := mint(t, auth.RoleCreator, "alice")
	buyer, buyer2 := mint(t, auth.RoleViewer, "bob"), mint(t, auth.RoleViewer, "carol")
	var stB, p1, p2, q struct{ ID string }
	product := func(sid string, out any) {
		call(t, "POST", base+"/api/streams/"+sid+"/products", creator, map[string]any{
			"sku": "S", "title": "T", "price_cents": 100, "currency": "USD", "stock": 5}, 201, out)
	}
	var a struct{ ID string }
	call(t, "POST", base+"/api/streams", creator, map[string]string{"title": "A"}, 201, &a)
	call(t, "POST", base+"/api/streams", creator, map[string]string{"title": "B"}, 201, &stB)
	product(a.ID, &p1)
	product(a.ID, &p2)
	product(stB.ID, &q)
	call(t, "POST", base+"/api/cart/items", buyer, map[string]any{"product_id": p1.ID, "quantity": 1}, 201, nil)
	var acked struct{ ID string }
	call(t, "POST", base+"/api/checkout", buyer, map[string]any{}, 201, &acked)
	call(t, "POST", base+"/api/cart/items", buyer2, map[string]any{"product_id": q.ID, "quantity": 1}, 201, nil)
	ws := dialWS(t, base, a.ID, "")
	snap := next(t, ws, "snapshot")
	armed.Store(&a.ID)

	var wg sync.WaitGroup
	check := func(what string, wantStatus int, method, url, token string, body any, header map[string]string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, ecode, retry, took := timedRequest(t, method, url, token, body, header)
			switch {
			case took > frozenAnswerWithin:
				t.Errorf("%s with Redis frozen: answered %d after %v, want within %v", what, code, took, frozenAnswerWithin)
			case code != wantStatus:
				t.Errorf("%s with Redis frozen: got %d %q, want %d", what, code, ecode, wantStatus)
			case code == 503 && (ecode != "unavailable" || !retry):
				t.Errorf("%s with Redis frozen: got 503 %q Retry-After %v, want unavailable with Retry-After", what, ecode, retry)
			}
		}()
	}
	key := uuid.NewString()
	check("pin on A", 200, "POST", base+"/api/streams/"+a.ID+"/pins", creator, map[string]string{"product_id": p2.ID}, nil)
	select {
	case <-proxy.tripped:
	case <-time.After(5 * time.Second):
		t.Fatal("the pin's event was not published within 5 s")
	}
	frozenAt := time.Now()
	check("products of A", 503, "GET", base+"/api/streams/"+a.ID+"/products", "", nil, nil)
	check("hold on A", 503, "POST", base+"/api/cart/items", buyer, map[string]any{"product_id": p1.ID, "quantity": 1}, nil)
	check("products of B", 503, "GET", base+"/api/streams/"+stB.ID+"/products", "", nil, nil)
	check("hold on B", 503, "POST", base+"/api/cart/items", buyer, map[string]any{"product_id": q.ID, "quantity": 1}, nil)
	check("checkout on B", 503, "POST", base+"/api/checkout", buyer2, map[string]any{}, map[string]string{"Idempotency-Key": key})
	wg.Wait()
	time.Sleep(time.Until(frozenAt.Add(2500 * time.Millisecond)))
	thaw()

	// The checkout again with its key: one order, whatever the frozen attempt did.
	var order string
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, id := checkoutWithKey(t, base, buyer2, key)
		if code == 200 || code == 201 {
			order = id
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkout with the same key after the thaw: still %d after 15 s", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, again := checkoutWithKey(t, base, buyer2, key); code != 200 || again != order {
		t.Fatalf("checkout replayed with its key: got %d %q, want 200 with %s", code, again, order)
	}
	var orders []struct{ ID string }
	call(t, "GET", base+"/api/orders", buyer2, nil, 200, &orders)
	if len(orders) != 1 || orders[0].ID != order {
		t.Fatalf("buyer2's orders after the thaw: got %+v, want only %s", orders, order)
	}
	call(t, "GET", base+"/api/orders", buyer, nil, 200, &orders)
	if len(orders) != 1 || orders[0].ID != acked.ID {
		t.Fatalf("buyer's orders after the thaw: got %+v, want the acknowledged %s", orders, acked.ID)
	}
	for _, sid := range []string{a.ID, stB.ID} {
		var products []struct{ Stock, Held, Sold int }
		call(t, "GET", base+"/api/streams/"+sid+"/products", "", nil, 200, &products)
		for _, p := range products {
			if p.Stock+p.Held+p.Sold != 5 || p.Sold > 1 {
				t.Fatalf("stream %s after the thaw: product %+v, want stock+held+sold = 5, at most 1 sold", sid, p)
			}
		}
	}

	// The viewer gets the pin of the frozen request, then the unpin made after the thaw,
	// every event one seq after the one before, from the snapshot on.
	call(t, "DELETE", base+"/api/streams/"+a.ID+"/pins/"+p2.ID, creator, nil, 200, nil)
	seq, pinned := snap.Seq, false
	for done := false; !done; {
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, raw, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for the pin and unpin events (last seq %d, pin seen %v): %v", seq, pinned, err)
		}
		var f frame
		json.Unmarshal(raw, &f)
		if f.Seq != seq+1 {
			t.Fatalf("%s event with seq %d after seq %d, want %d", f.Type, f.Seq, seq, seq+1)
		}
		seq = f.Seq
		switch f.Type {
		case "pin":
			pinned = true
		case "unpin":
			if !pinned {
				t.Fatal("unpin event before the pin event")
			}
			done = true
		}
	}
	call(t, "POST", base+"/api/cart/items", buyer, map[string]any{"product_id": q.ID, "quantity": 1}, 201, nil)
}

// TestSlowRequestBodyCut: a client sends a request's headers and then only part of its
// body. The server stops waiting for the rest after http.read_timeout and closes the
// connection, instead of holding the request (and its goroutine) for ever.
func TestSlowRequestBodyCut(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.ReadTimeout = 300 * time.Millisecond
	addr := startMain(t, "server", cfg).Addr()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	io.WriteString(c, "POST /api/streams HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ti")
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = io.ReadAll(c) // whatever the answer, then the close
	if took := time.Since(start); err != nil || took > 1500*time.Millisecond {
		t.Fatalf("a body that never completes: connection still open after %v (%v), want closed within 1.5 s", took, err)
	}
}

// TestRequestHeadersBounded: a request's line and headers are bounded (64 KiB, net/http
// adds 4 KiB of slack): a token of 100 KB in the Authorization header or the
// websocket's ?token= → 431 before any handler; a real request's few kilobytes and a
// 60 KB header are served as before.
func TestRequestHeadersBounded(t *testing.T) {
	addr := startMain(t, "server", testConfig(t)).Addr()
	get := func(path string, hdr http.Header) int {
		req, err := http.NewRequest("GET", "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	big := strings.Repeat("a", 100_000)
	if code := get("/api/cart", http.Header{"Authorization": {"Bearer " + big}}); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 100 KB Authorization header: %d, want 431", code)
	}
	if code := get("/ws/00000000-0000-0000-0000-000000000000?token="+big, nil); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 100 KB ?token=: %d, want 431", code)
	}
	if code := get("/api/cart", http.Header{"Authorization": {"Bearer " + big[:60_000]}}); code != http.StatusUnauthorized {
		t.Errorf("a 60 KB Authorization header (a bad token): %d, want 401", code)
	}
	if code := get("/healthz", http.Header{"X-Pad": {big[:4_000]}}); code != http.StatusOK {
		t.Errorf("a request with 4 KB of headers: %d, want 200", code)
	}
}
