package web

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/live"
)

// redisStore swaps the test server's store for a Redis store on the shared Redis under
// a key prefix of its own, deleted afterwards.
func redisStore(t *testing.T) func(*Deps) {
	return func(d *Deps) {
		ctx := context.Background()
		prefix := "webtest-" + uuid.NewString()[:8]
		st, err := cart.OpenRedis(ctx, "redis://127.0.0.1:6379/0", cart.RedisOptions{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			st.Close()
			rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
			defer rdb.Close()
			iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
			for iter.Next(ctx) {
				rdb.Del(ctx, iter.Val())
			}
		})
		d.Store = st
	}
}

// TestUppercaseIDs: an id spelled in capitals is the same UUID. Every route taking an
// id in its path or body finds the thing named by the capital spelling, and answers
// (bodies, Location, live frames) carry the canonical lowercase form only. A capital
// spelling of an unknown UUID is still 404.
func TestUppercaseIDs(t *testing.T) {
	for _, store := range []string{"bolt", "redis"} {
		t.Run(store, func(t *testing.T) {
			tweaks := []func(*Deps){func(d *Deps) {
				hub := live.NewHub(live.Config{Bus: live.NewMemoryBus(nil, 0), Presence: live.NewMemoryPresence(nil), ViewersInterval: time.Hour})
				t.Cleanup(func() { hub.Close() })
				d.Live, d.Events, d.Presence = hub, hub, hub
			}}
			if store == "redis" {
				tweaks = append(tweaks, redisStore(t))
			}
			testUppercaseIDs(t, newMediaEnv(t, tweaks...))
		})
	}
}

func testUppercaseIDs(t *testing.T, e *testEnv) {
	creator := e.token(auth.RoleCreator, "alice")
	buyer := e.token(auth.RoleViewer, "bob")
	st := e.createStream("alice")
	var p cart.Product
	resp, raw := e.do("POST", "/api/streams/"+st.ID+"/products", creator, map[string]any{
		"sku": "S1", "title": "Sneaker", "price_cents": 9900, "currency": "EUR", "stock": 50})
	e.expect(resp, raw, http.StatusCreated, "", &p)
	var sale cart.Sale
	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/sales", creator, map[string]any{
		"product_id": p.ID, "price_cents": 4900, "quantity": 10, "duration_s": 120})
	e.expect(resp, raw, http.StatusCreated, "", &sale)
	hold := func(body map[string]any) cart.Hold {
		t.Helper()
		var h cart.Hold
		resp, raw := e.do("POST", "/api/cart/items", buyer, body)
		e.expect(resp, raw, http.StatusCreated, "", &h)
		return h
	}
	h1, h2 := hold(map[string]any{"product_id": p.ID, "quantity": 1}), hold(map[string]any{"product_id": p.ID, "quantity": 2})

	up := strings.ToUpper
	sid, pid, said := up(st.ID), up(p.ID), up(sale.ID)
	ids := []string{st.ID, p.ID, sale.ID, h1.ID, h2.ID}
	upper := []string{sid, pid, said, up(h1.ID), up(h2.ID)}
	// lowercaseOnly fails when an answer spells one of the ids in capitals.
	lowercaseOnly := func(what, s string) {
		t.Helper()
		for i, u := range upper {
			if strings.Contains(s, u) && u != ids[i] {
				t.Fatalf("%s: answer carries %s, want only the lowercase %s: %s", what, u, ids[i], s)
			}
		}
	}

	ws := e.dialWS(sid, "")
	if f := readType(t, ws, "snapshot"); !strings.Contains(string(f.Stream), st.ID) {
		t.Fatalf("/ws/%s: snapshot of stream %s, want %s", sid, f.Stream, st.ID)
	}

	mod := e.token(auth.RoleModerator, "mia")
	msg := up(uuid.NewString())
	cases := []struct {
		method, path, token string
		body                any
		want                int
	}{
		{"GET", "/api/streams/" + sid, "", nil, 200},
		{"GET", "/api/streams/" + sid + "/products", "", nil, 200},
		{"POST", "/api/streams/" + sid + "/products", creator, map[string]any{
			"sku": "S2", "title": "Cap", "price_cents": 1500, "currency": "EUR", "stock": 5}, 201},
		{"GET", "/api/products/" + pid, "", nil, 200},
		{"PATCH", "/api/products/" + pid, creator, map[string]any{"hidden": false}, 200},
		{"POST", "/api/streams/" + sid + "/pins", creator, map[string]any{"product_id": pid}, 200},
		{"GET", "/api/streams/" + sid + "/pins", "", nil, 200},
		{"DELETE", "/api/streams/" + sid + "/pins/" + pid, creator, nil, 200},
		{"POST", "/api/streams/" + sid + "/sales", creator, map[string]any{
			"product_id": pid, "price_cents": 3900, "quantity": 5, "duration_s": 60}, 201},
		{"GET", "/api/streams/" + sid + "/sales", "", nil, 200},
		{"GET", "/api/sales/" + said, "", nil, 200},
		{"POST", "/api/cart/items", buyer, map[string]any{"sale_id": said, "quantity": 1}, 201},
		{"POST", "/api/cart/items", buyer, map[string]any{"product_id": pid, "quantity": 1}, 201},
		{"DELETE", "/api/cart/items/" + up(h2.ID), buyer, nil, 204},
		{"POST", "/api/checkout", buyer, map[string]any{"stream_id": sid, "hold_ids": []string{up(h1.ID)}}, 201},
		{"GET", "/api/streams/" + sid + "/orders", creator, nil, 200},
		{"POST", "/api/streams/" + sid + "/mutes", mod, map[string]any{"user_id": "bob", "duration_s": 60}, 201},
		{"DELETE", "/api/streams/" + sid + "/mutes/bob", mod, nil, 204},
		{"DELETE", "/api/streams/" + sid + "/chat/" + msg, mod, nil, 204},
		{"POST", "/api/streams/" + sid + "/media", mod, map[string]any{"audio_muted": true}, 200},
		{"POST", "/api/streams/" + sid + "/announce", mod, map[string]any{"text": "hi"}, 204},
		{"GET", "/api/streams/" + sid + "/audit", mod, nil, 200},
		{"POST", "/api/sales/" + said + "/stop", mod, nil, 200},
		// Unknown UUIDs stay unknown in any spelling.
		{"GET", "/api/streams/" + up(uuid.NewString()), "", nil, 404},
		{"GET", "/api/products/" + up(uuid.NewString()), "", nil, 404},
		{"POST", "/api/cart/items", buyer, map[string]any{"product_id": up(uuid.NewString()), "quantity": 1}, 404},
	}
	for _, c := range cases {
		var hdr []string
		if c.method == "POST" && c.path == "/api/checkout" {
			hdr = []string{"Idempotency-Key", "k1"}
		}
		resp, raw := e.doHeaders(c.method, c.path, c.token, c.body, hdr...)
		if resp.StatusCode != c.want {
			t.Fatalf("%s %s: got %d, want %d: %s", c.method, c.path, resp.StatusCode, c.want, raw)
		}
		lowercaseOnly(c.method+" "+c.path, string(raw))
	}
	if f := readType(t, ws, "chat_delete"); f.ID != strings.ToLower(msg) {
		t.Fatalf("chat_delete event for %s: got id %q, want %q", msg, f.ID, strings.ToLower(msg))
	}

	// WHIP and WHEP on the capital spelling: the Location names the stream in lowercase
	// and is the session's own.
	for _, m := range []struct{ path, token string }{{"/whip/", creator}, {"/whep/", ""}} {
		resp, raw := e.sdpReq("POST", m.path+sid, m.token, "application/sdp", sdpOffer(t, m.path == "/whip/"))
		if resp.StatusCode != 201 {
			t.Fatalf("POST %s%s: got %d, want 201: %s", m.path, sid, resp.StatusCode, raw)
		}
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, m.path+st.ID+"/") {
			t.Fatalf("POST %s%s: Location %q, want %s%s/<resource>", m.path, sid, loc, m.path, st.ID)
		}
		rid := strings.TrimPrefix(loc, m.path+st.ID+"/")
		if resp, raw := e.sdpReq("DELETE", m.path+sid+"/"+rid, m.token, "", ""); resp.StatusCode != 200 {
			t.Fatalf("DELETE %s%s/%s: got %d, want 200: %s", m.path, sid, rid, resp.StatusCode, raw)
		}
	}

	resp, raw = e.do("POST", "/api/streams/"+sid+"/end", creator, nil)
	e.expect(resp, raw, http.StatusOK, "", nil)
	lowercaseOnly("end", string(raw))
	if got := e.streamStatus(st.ID); got != cart.StreamEnded {
		t.Fatalf("stream %s after POST /api/streams/%s/end: got %s, want ended", st.ID, sid, got)
	}
}
