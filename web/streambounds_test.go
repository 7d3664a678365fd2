package web

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/uuid"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
)

// TestStreamBoundsRefused: a stream's products (hidden ones too) and sales (stopped ones
// too) are bounded (cart.max_products_per_stream, max_sales_per_stream): one more is
// 409 conflict "a stream has at most N products|sales", on either store, after the
// checks that come first (401, 404, 403, 400 as before), and the refused one is not
// listed.
func TestStreamBoundsRefused(t *testing.T) {
	for _, store := range []string{"bolt", "redis"} {
		t.Run(store, func(t *testing.T) {
			var tweaks []func(*Deps)
			if store == "redis" {
				tweaks = append(tweaks, redisStore(t))
			}
			tweaks = append(tweaks, func(d *Deps) {
				d.Commerce = cart.NewService(d.Store, d.Events, cart.ServiceConfig{MaxProducts: 2, MaxSales: 2}, d.Now, nil)
			})
			e := newTestEnv(t, tweaks...)
			owner, mod, other := e.token(auth.RoleCreator, "alice"), e.token(auth.RoleModerator, "mia"), e.token(auth.RoleCreator, "carol")
			sid := e.createStream("alice").ID
			product := map[string]any{"sku": "MUG", "title": "Mug", "price_cents": 1000, "currency": "EUR", "stock": 10}
			var p1, p2 cart.Product
			resp, raw := e.do("POST", "/api/streams/"+sid+"/products", owner, product)
			e.expect(resp, raw, http.StatusCreated, "", &p1)
			resp, raw = e.do("POST", "/api/streams/"+sid+"/products", owner, product)
			e.expect(resp, raw, http.StatusCreated, "", &p2)
			resp, raw = e.do("PATCH", "/api/products/"+p2.ID, mod, map[string]bool{"hidden": true})
			e.expect(resp, raw, http.StatusOK, "", nil)
			sale := map[string]any{"product_id": p1.ID, "price_cents": 500, "quantity": 1, "duration_s": 600}
			var s1 cart.Sale
			resp, raw = e.do("POST", "/api/streams/"+sid+"/sales", owner, sale)
			e.expect(resp, raw, http.StatusCreated, "", &s1)
			resp, raw = e.do("POST", "/api/sales/"+s1.ID+"/stop", owner, nil)
			e.expect(resp, raw, http.StatusOK, "", nil)
			resp, raw = e.do("POST", "/api/streams/"+sid+"/sales", owner, sale)
			e.expect(resp, raw, http.StatusCreated, "", nil)

			for _, tc := range []struct {
				name, path, token string
				body              any
				status            int
				code, message     string
			}{
				{"3rd product", "/api/streams/" + sid + "/products", owner, product, 409, "conflict", "a stream has at most 2 products"},
				{"3rd sale", "/api/streams/" + sid + "/sales", owner, sale, 409, "conflict", "a stream has at most 2 sales"},
				{"no token first", "/api/streams/" + sid + "/products", "", product, 401, "unauthorized", ""},
				{"unknown stream first", "/api/streams/" + uuid.NewString() + "/sales", owner, sale, 404, "not_found", ""},
				{"another's stream first", "/api/streams/" + sid + "/products", other, product, 403, "forbidden", ""},
				{"bad shape first", "/api/streams/" + sid + "/sales", owner, map[string]any{"product_id": p1.ID}, 400, "bad_request", ""},
			} {
				resp, raw := e.do("POST", tc.path, tc.token, tc.body)
				e.expect(resp, raw, tc.status, tc.code, nil)
				var er struct {
					Error struct{ Code, Message string }
				}
				if err := json.Unmarshal(raw, &er); err != nil {
					t.Fatalf("%s: %v: %s", tc.name, err, raw)
				}
				if tc.message != "" && er.Error.Message != tc.message {
					t.Errorf("%s: got message %q, want %q", tc.name, er.Error.Message, tc.message)
				}
			}
			var ps []cart.Product
			resp, raw = e.do("GET", "/api/streams/"+sid+"/products", owner, nil)
			e.expect(resp, raw, http.StatusOK, "", &ps)
			var ss []cart.Sale
			resp, raw = e.do("GET", "/api/streams/"+sid+"/sales", owner, nil)
			e.expect(resp, raw, http.StatusOK, "", &ss)
			if len(ps) != 2 || len(ss) != 2 {
				t.Fatalf("listed after the refusals: %d products and %d sales, want 2 and 2", len(ps), len(ss))
			}
		})
	}
}
