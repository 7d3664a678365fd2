package web

import (
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/livecart/livecart/web/auth"
)

func TestLimiterSet(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiterSet(1, 2)
	for i, want := range []bool{true, true, false} {
		if ok, _ := l.allow("a", now); ok != want {
			t.Fatalf("request %d: got %v, want %v", i, ok, want)
		}
	}
	if ok, wait := l.allow("a", now); ok || wait <= 0 || wait > time.Second {
		t.Fatalf("got ok=%v wait=%v, want refused with wait in (0,1s]", ok, wait)
	}
	if ok, _ := l.allow("b", now); !ok {
		t.Fatal("another key was limited")
	}
	if ok, _ := l.allow("a", now.Add(time.Second)); !ok {
		t.Fatal("got refused after refill, want allowed")
	}
	// Idle keys are forgotten.
	l.allow("c", now.Add(10*time.Minute))
	if len(l.byKey) != 1 {
		t.Fatalf("got %d keys, want 1 after sweep", len(l.byKey))
	}
	if ok, _ := (*limiterSet)(nil).allow("x", now); !ok {
		t.Fatal("nil set must allow")
	}
}

func TestPerIPRateLimit(t *testing.T) {
	e := newTestEnv(t, func(d *Deps) { d.Options.RateLimits.PerIPPerSecond = 0.5; d.Options.RateLimits.PerIPBurst = 3 })
	codes := []int{}
	for range 5 {
		resp, _ := e.do("GET", "/api/streams", "", nil)
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests {
			if s, _ := strconv.Atoi(resp.Header.Get("Retry-After")); s < 1 {
				t.Fatalf("got Retry-After %q, want ≥ 1", resp.Header.Get("Retry-After"))
			}
		}
	}
	if codes[2] != 200 || codes[3] != 429 || codes[4] != 429 {
		t.Fatalf("got %v, want 3×200 then 429", codes)
	}
	resp, _ := e.do("GET", "/healthz", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("healthz got %d, want 200 (never limited)", resp.StatusCode)
	}
}

func TestPerUserHoldAndCheckoutLimits(t *testing.T) {
	e := newTestEnv(t, func(d *Deps) {
		d.Options.RateLimits.HoldsPerUserPerSecond = 0.1
		d.Options.RateLimits.CheckoutsPerUserPerSecond = 0.1
	})
	st := e.createStream("alice")
	var p struct{ ID string }
	resp, raw := e.do("POST", "/api/streams/"+st.ID+"/products", e.token(auth.RoleCreator, "alice"),
		map[string]any{"sku": "S", "title": "T", "price_cents": 100, "currency": "USD", "stock": 10})
	e.expect(resp, raw, http.StatusCreated, "", &p)
	bob, carol := e.token(auth.RoleViewer, "bob"), e.token(auth.RoleViewer, "carol")
	hold := map[string]any{"product_id": p.ID, "quantity": 1}
	resp, raw = e.do("POST", "/api/cart/items", bob, hold)
	e.expect(resp, raw, http.StatusCreated, "", nil)
	resp, raw = e.do("POST", "/api/cart/items", bob, hold)
	e.expect(resp, raw, http.StatusTooManyRequests, "rate_limited", nil)
	if s, _ := strconv.Atoi(resp.Header.Get("Retry-After")); s < 1 {
		t.Fatalf("got Retry-After %q, want ≥ 1", resp.Header.Get("Retry-After"))
	}
	// Another user is not limited by bob's holds.
	resp, raw = e.do("POST", "/api/cart/items", carol, hold)
	e.expect(resp, raw, http.StatusCreated, "", nil)
	// Checkouts have their own bucket.
	checkout := func(tok, key string) (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", e.srv.URL+"/api/checkout", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, raw = checkout(bob, "k1")
	e.expect(resp, raw, http.StatusCreated, "", nil)
	resp, raw = checkout(bob, "k2")
	e.expect(resp, raw, http.StatusTooManyRequests, "rate_limited", nil)
}
