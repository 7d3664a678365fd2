package web

import (
	"cmp"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/web/auth"
)

// TestErrorMessagesDoNotRepeatTheCode: an error's message is the human text alone; the
// cart's sentinel (its words are the code's) is not appended ("the cart is empty:
// conflict") or prefixed ("bad request: quantity must be ≥ 1"), and a not-found names
// what was not found. The codes stay API.md's.
func TestErrorMessagesDoNotRepeatTheCode(t *testing.T) {
	e := newTestEnv(t)
	sh := e.shop()
	owner, bob := e.token(auth.RoleCreator, "alice"), e.token(auth.RoleViewer, "bob")
	sales := "/api/streams/" + sh.st.ID + "/sales"
	resp, raw := e.do("POST", "/api/sales/"+sh.sale.ID+"/stop", owner, nil)
	e.expect(resp, raw, http.StatusOK, "", nil)
	missing := uuid.NewString()
	for _, tc := range []struct {
		name, method, path, token string
		body                      any
		status                    int
		code, message             string
	}{
		{"empty cart", "POST", "/api/checkout", bob, map[string]any{}, 409, "conflict", "the cart is empty"},
		{"stopped sale", "POST", "/api/cart/items", bob, map[string]any{"sale_id": sh.sale.ID, "quantity": 1},
			409, "sale_not_active", "sale " + sh.sale.ID + " is not active"},
		{"sale over stock", "POST", sales, owner,
			map[string]any{"product_id": sh.product.ID, "price_cents": 1, "quantity": 11, "duration_s": 60},
			409, "conflict", "product has 10 units in stock, the sale wants 11"},
		{"sale quantity 0", "POST", sales, owner,
			map[string]any{"product_id": sh.product.ID, "price_cents": 1, "quantity": 0, "duration_s": 60},
			400, "bad_request", "quantity must be ≥ 1"},
		{"unknown sale", "POST", "/api/sales/" + missing + "/stop", owner, nil, 404, "not_found", "sale " + missing + " not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, code, message := apiErrorOf(t, e, tc.method, tc.path, tc.token, tc.body)
			if status != tc.status || code != tc.code || message != tc.message {
				t.Fatalf("got %d %q %q, want %d %q %q", status, code, message, tc.status, tc.code, tc.message)
			}
		})
	}
}

// TestWrongJSONTypesNameTheField: a body field of the wrong JSON type is a 400 whose
// message names the field and the kind of value it takes in the API's words, not Go's
// ("Go struct field NewProduct.price_cents of type int64"); a body that is not an
// object says so.
func TestWrongJSONTypesNameTheField(t *testing.T) {
	e := newTestEnv(t)
	sh := e.shop()
	owner, mod, bob := e.token(auth.RoleCreator, "alice"), e.token(auth.RoleModerator, "mia"), e.token(auth.RoleViewer, "bob")
	products := "/api/streams/" + sh.st.ID + "/products"
	product := func(price string) string {
		return `{"sku":"S","title":"T","price_cents":` + price + `,"currency":"EUR","stock":1}`
	}
	sales, pid := "/api/streams/"+sh.st.ID+"/sales", `"`+sh.product.ID+`"`
	sale := func(productID, quantity, duration string) string {
		return `{"product_id":` + productID + `,"price_cents":1,"quantity":` + quantity + `,"duration_s":` + duration + `}`
	}
	for _, tc := range []struct {
		name, method, path, token, body, message string
	}{
		{"stream title a number", "POST", "/api/streams", owner, `{"title":5}`, "field title must be a string"},
		{"stream body an array", "POST", "/api/streams", owner, `[]`, "the body must be a JSON object, not an array"},
		{"stream body a string", "POST", "/api/streams", owner, `"x"`, "the body must be a JSON object, not a string"},
		{"unknown field", "POST", "/api/streams", owner, `{"title":"x","color":"red"}`, `invalid JSON: unknown field "color"`},
		{"field name in another case", "POST", "/api/streams", owner, `{"Title":"x"}`, `invalid JSON: unknown field "Title"`},
		{"price with a fraction", "POST", products, owner, product("1000.5"), "field price_cents must be a whole number, not 1000.5"},
		{"price with an exponent", "POST", products, owner, product("1e3"), "field price_cents must be a whole number, not 1e3"},
		{"price beyond 64 bits", "POST", products, owner, product("99999999999999999999"), "field price_cents is out of range: 99999999999999999999"},
		{"price a string", "POST", products, owner, product(`"1000"`), "field price_cents must be a whole number"},
		{"sale product_id a number", "POST", sales, owner, sale(`5`, `1`, `60`), "field product_id must be a string"},
		{"sale duration with a fraction", "POST", sales, owner, sale(pid, `1`, `1.5`), "field duration_s must be a whole number, not 1.5"},
		{"sale quantity a string", "POST", sales, owner, sale(pid, `"x"`, `60`), "field quantity must be a whole number"},
		{"sale quantity with a fraction", "POST", sales, owner, sale(pid, `1.5`, `60`), "field quantity must be a whole number, not 1.5"},
		{"sale quantity below 64 bits", "POST", sales, owner, sale(pid, `-99999999999999999999`, `60`), "field quantity is out of range: -99999999999999999999"},
		{"hold quantity a string", "POST", "/api/cart/items", bob, `{"product_id":"` + sh.product.ID + `","quantity":"1"}`, "field quantity must be a whole number"},
		{"hold_ids a string", "POST", "/api/checkout", bob, `{"hold_ids":"x"}`, "field hold_ids must be an array of strings"},
		{"hold_ids of numbers", "POST", "/api/checkout", bob, `{"hold_ids":[5]}`, "field hold_ids must be an array of strings"},
		{"hidden a string", "PATCH", "/api/products/" + sh.product.ID, mod, `{"hidden":"yes"}`, "field hidden must be true or false"},
		{"media mute a number", "POST", "/api/streams/" + sh.st.ID + "/media", mod, `{"audio_muted":1}`, "field audio_muted must be true or false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, code, message := apiErrorOf(t, e, tc.method, tc.path, tc.token, tc.body)
			if status != http.StatusBadRequest || code != "bad_request" || message != tc.message {
				t.Fatalf("got %d %q %q, want 400 bad_request %q", status, code, message, tc.message)
			}
		})
	}
}

// TestDuplicateFieldsNameTheField: a body that gives a field twice is 400 bad_request
// naming it. encoding/json kept the last value (another reader the first), so
// {"quantity":1,"quantity":5} held 5 units; now no decoding path takes either: the
// hold's hand-written one, encoding/json's for every other body, a name spelt with an
// escape, a field of a body whose fields are all optional.
func TestDuplicateFieldsNameTheField(t *testing.T) {
	e := newTestEnv(t)
	sh := e.shop()
	owner, mod, bob := e.token(auth.RoleCreator, "alice"), e.token(auth.RoleModerator, "mia"), e.token(auth.RoleViewer, "bob")
	pid := `"` + sh.product.ID + `"`
	for _, tc := range []struct {
		name, method, path, token, body, message string
	}{
		{"stream title", "POST", "/api/streams", owner, `{"title":"a","title":"b"}`, `invalid JSON: duplicate field "title"`},
		{"product price", "POST", "/api/streams/" + sh.st.ID + "/products", owner,
			`{"sku":"S","title":"T","price_cents":100,"currency":"EUR","stock":5,"price_cents":1}`, `invalid JSON: duplicate field "price_cents"`},
		{"hold quantity (fast path)", "POST", "/api/cart/items", bob, `{"product_id":` + pid + `,"quantity":1,"quantity":5}`, `invalid JSON: duplicate field "quantity"`},
		{"hold product_id (fast path)", "POST", "/api/cart/items", bob, `{"product_id":` + pid + `,"product_id":` + pid + `,"quantity":1}`, `invalid JSON: duplicate field "product_id"`},
		{"hold quantity, spaced", "POST", "/api/cart/items", bob, `{"product_id": ` + pid + `, "quantity": 1, "quantity": 5}`, `invalid JSON: duplicate field "quantity"`},
		{"hold quantity, once escaped", "POST", "/api/cart/items", bob, `{"product_id":` + pid + `,"qu\u0061ntity":1,"quantity":5}`, `invalid JSON: duplicate field "quantity"`},
		{"pin product_id", "POST", "/api/streams/" + sh.st.ID + "/pins", owner, `{"product_id":` + pid + `,"product_id":` + pid + `}`, `invalid JSON: duplicate field "product_id"`},
		{"hide", "PATCH", "/api/products/" + sh.product.ID, mod, `{"hidden":false,"hidden":true}`, `invalid JSON: duplicate field "hidden"`},
		{"media mute", "POST", "/api/streams/" + sh.st.ID + "/media", mod, `{"audio_muted":true,"audio_muted":false}`, `invalid JSON: duplicate field "audio_muted"`},
		{"checkout hold_ids", "POST", "/api/checkout", bob, `{"hold_ids":[],"hold_ids":[]}`, `invalid JSON: duplicate field "hold_ids"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, code, message := apiErrorOf(t, e, tc.method, tc.path, tc.token, tc.body)
			if status != http.StatusBadRequest || code != "bad_request" || message != tc.message {
				t.Fatalf("got %d %q %q, want 400 bad_request %q", status, code, message, tc.message)
			}
		})
	}
}

// TestStoresWordErrorsAlike: the business errors read the same on the embedded and the
// Redis store (an outside test sees one API, whichever store serves it): a product of
// another currency, an unknown or hidden product to pin, a sale over the product's
// stock, an unknown sale, a hold of an unknown product, over the sale's per-buyer limit,
// sold out or of a scheduled sale, an Idempotency-Key used with another body, a change
// to an ended stream, and holds that expired before their checkout.
func TestStoresWordErrorsAlike(t *testing.T) {
	for _, store := range []string{"bolt", "redis"} {
		t.Run(store, func(t *testing.T) {
			clk := &stepClock{t: time.Now()}
			tweaks := []func(*Deps){func(d *Deps) { d.Now = clk.Now }}
			if store == "redis" {
				tweaks = append(tweaks, redisStore(t))
			}
			e := newTestEnv(t, tweaks...)
			sh := e.shop() // MUG-1: 10 units, 5 of them in a sale of at most 2 per buyer; 2 left below
			owner, mod, bob := e.token(auth.RoleCreator, "alice"), e.token(auth.RoleModerator, "mia"), e.token(auth.RoleViewer, "bob")
			sid := sh.st.ID
			var hidden, scheduled struct{ ID string }
			resp, raw := e.do("POST", "/api/streams/"+sid+"/products", owner, map[string]any{"sku": "CAP", "title": "Cap", "price_cents": 500, "currency": "EUR", "stock": 3})
			e.expect(resp, raw, http.StatusCreated, "", &hidden)
			resp, raw = e.do("PATCH", "/api/products/"+hidden.ID, mod, map[string]bool{"hidden": true})
			e.expect(resp, raw, http.StatusOK, "", nil)
			resp, raw = e.do("POST", "/api/streams/"+sid+"/sales", owner, map[string]any{"product_id": sh.product.ID, "price_cents": 1, "quantity": 1, "duration_s": 60, "starts_in_s": 60})
			e.expect(resp, raw, http.StatusCreated, "", &scheduled)
			ended := e.createStream("alice")
			resp, raw = e.do("POST", "/api/streams/"+ended.ID+"/end", owner, nil)
			e.expect(resp, raw, http.StatusOK, "", nil)
			resp, raw = e.do("POST", "/api/cart/items", bob, map[string]any{"product_id": sh.product.ID, "quantity": 1})
			e.expect(resp, raw, http.StatusCreated, "", nil)
			resp, raw = e.doHeaders("POST", "/api/checkout", bob, "", "Idempotency-Key", "k1")
			e.expect(resp, raw, http.StatusCreated, "", nil)
			var late struct{ ID string }
			resp, raw = e.do("POST", "/api/cart/items", bob, map[string]any{"product_id": sh.product.ID, "quantity": 1})
			e.expect(resp, raw, http.StatusCreated, "", &late)
			missing := uuid.NewString()
			for _, tc := range []struct {
				name, method, path, token, key string
				body                           any
				status                         int
				code, message                  string
				later                          time.Duration
			}{
				{"other currency", "POST", "/api/streams/" + sid + "/products", owner, "",
					map[string]any{"sku": "X", "title": "X", "price_cents": 1, "currency": "USD", "stock": 1},
					409, "conflict", "the stream's products are priced in EUR", 0},
				{"pin unknown product", "POST", "/api/streams/" + sid + "/pins", owner, "", map[string]string{"product_id": missing},
					404, "not_found", "product " + missing + " not found", 0},
				{"pin hidden product", "POST", "/api/streams/" + sid + "/pins", owner, "", map[string]string{"product_id": hidden.ID},
					409, "conflict", "product " + hidden.ID + " is hidden", 0},
				{"sale over stock", "POST", "/api/streams/" + sid + "/sales", owner, "",
					map[string]any{"product_id": sh.product.ID, "price_cents": 1, "quantity": 9, "duration_s": 60},
					409, "conflict", "product has 2 units in stock, the sale wants 9", 0},
				{"unknown sale", "POST", "/api/sales/" + missing + "/stop", owner, "", nil, 404, "not_found", "sale " + missing + " not found", 0},
				{"hold of an unknown product", "POST", "/api/cart/items", bob, "", map[string]any{"product_id": missing, "quantity": 1},
					404, "not_found", "product " + missing + " not found", 0},
				{"over the per-buyer limit", "POST", "/api/cart/items", bob, "", map[string]any{"sale_id": sh.sale.ID, "quantity": 3},
					409, "limit_exceeded", "at most 2 units of this sale per buyer", 0},
				{"sold out", "POST", "/api/cart/items", bob, "", map[string]any{"product_id": sh.product.ID, "quantity": 4},
					409, "sold_out", "sold out", 0},
				{"scheduled sale", "POST", "/api/cart/items", bob, "", map[string]any{"sale_id": scheduled.ID, "quantity": 1},
					409, "sale_not_active", "sale " + scheduled.ID + " is not active", 0},
				{"key used with another body", "POST", "/api/checkout", bob, "k1", map[string]any{"stream_id": sid},
					409, "conflict", "the idempotency key was used with another request", 0},
				{"ended stream", "POST", "/api/streams/" + ended.ID + "/products", owner, "",
					map[string]any{"sku": "X", "title": "X", "price_cents": 1, "currency": "EUR", "stock": 1},
					409, "conflict", "stream has ended", 0},
				{"media of an ended stream", "POST", "/api/streams/" + ended.ID + "/media", mod, "", map[string]bool{"audio_muted": true},
					409, "conflict", "stream has ended", 0},
				{"expired hold_ids", "POST", "/api/checkout", bob, "k2", map[string]any{"hold_ids": []string{late.ID}},
					409, "hold_expired", "holds have expired: " + late.ID, 11 * time.Minute},
			} {
				clk.Add(tc.later)
				resp, raw := e.doHeaders(tc.method, tc.path, tc.token, tc.body, "Idempotency-Key", cmp.Or(tc.key, uuid.NewString()))
				var er struct {
					Error struct{ Code, Message string }
				}
				if err := json.Unmarshal(raw, &er); err != nil {
					t.Fatalf("%s: decode %s: %v", tc.name, raw, err)
				}
				if resp.StatusCode != tc.status || er.Error.Code != tc.code || er.Error.Message != tc.message {
					t.Errorf("%s: got %d %q %q, want %d %q %q", tc.name, resp.StatusCode, er.Error.Code, er.Error.Message, tc.status, tc.code, tc.message)
				}
			}
		})
	}
}

// apiErrorOf makes a request (with a fresh Idempotency-Key) and returns its status and
// the code and message of its error body.
func apiErrorOf(t *testing.T, e *testEnv, method, path, token string, body any) (status int, code, message string) {
	t.Helper()
	resp, raw := e.doHeaders(method, path, token, body, "Idempotency-Key", uuid.NewString())
	var er struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(raw, &er); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return resp.StatusCode, er.Error.Code, er.Error.Message
}
