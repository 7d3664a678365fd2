package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSaleStormReplaysUnansweredCheckouts: a server that places every third order but
// answers its checkout 503 (as a node does when the store's answer comes after the
// request's bound). The storm counts those 503s as failures, replays them after the
// storm with the same Idempotency-Key, and counts the orders the replay answers, so the
// sale read back (sold = every placed order) matches and the invariant holds. Before,
// the storm reported the invariant broken whenever a checkout answered 503.
func TestSaleStormReplaysUnansweredCheckouts(t *testing.T) {
	const buyers = 30
	var mu sync.Mutex
	placed := map[string]bool{} // idempotency keys with an order
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == "POST" && r.URL.Path == "/api/streams",
			r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/products"),
			r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/sales"):
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, `{"id":"x"}`)
		case r.URL.Path == "/api/cart/items":
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, `{}`)
		case r.URL.Path == "/api/checkout":
			key := r.Header.Get("Idempotency-Key")
			if placed[key] {
				fmt.Fprint(w, `{}`) // the replay: 200, the same order
				return
			}
			placed[key] = true
			calls++
			if calls%3 == 0 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusCreated)
		case r.URL.Path == "/api/sales/x":
			fmt.Fprintf(w, `{"quantity":%d,"remaining":0,"held":0,"sold":%d,"returned":0}`, buyers, len(placed))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	tokens := make([]string, buyers)
	for i := range tokens {
		tokens[i] = fmt.Sprint("t", i)
	}
	var holdLat, coLat latencies
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := saleStorm(ctx, saleConfig{}, srv.Client(), srv.URL, "creator", tokens, buyers, &holdLat, &coLat,
		func() func() { return func() {} })
	if err != nil {
		t.Fatal(err)
	}
	if res.failures["checkout 503"] != buyers/3 || res.replayed != buyers/3 || res.placed != buyers/3 {
		t.Fatalf("failures %v, replayed %d, placed %d: want %d checkouts 503, replayed and placed", res.failures, res.replayed, res.placed, buyers/3)
	}
	if res.invariantBroken || res.oversell != 0 {
		t.Fatalf("invariant broken %v, oversell %d: want neither", res.invariantBroken, res.oversell)
	}
	if coLat.ok != buyers-buyers/3 || coLat.fail != buyers/3 {
		t.Fatalf("checkout latencies ok %d fail %d: the replays must not count in the storm's figures", coLat.ok, coLat.fail)
	}
}
