package web

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
)

// doKey is e.do with an Idempotency-Key header (omitted when key is "-").
func (e *testEnv) doKey(method, path, token, key string, body string) (*http.Response, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, bytes.NewBufferString(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if key != "-" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// shop is a stream of alice with one product (10 units at 1000 EUR cents) and an active
// sale of 5 of them (limit 2).
type shop struct {
	st      StreamView
	product cart.Product
	sale    cart.Sale
}

func (e *testEnv) shop() shop {
	e.t.Helper()
	var sh shop
	sh.st = e.createStream("alice")
	owner := e.token(auth.RoleCreator, "alice")
	resp, raw := e.do("POST", "/api/streams/"+sh.st.ID+"/products", owner,
		map[string]any{"sku": "MUG-1", "title": "Mug", "price_cents": 1000, "currency": "EUR", "stock": 10})
	e.expect(resp, raw, http.StatusCreated, "", &sh.product)
	resp, raw = e.do("POST", "/api/streams/"+sh.st.ID+"/sales", owner,
		map[string]any{"product_id": sh.product.ID, "price_cents": 500, "quantity": 5, "per_user_limit": 2, "duration_s": 600})
	e.expect(resp, raw, http.StatusCreated, "", &sh.sale)
	return sh
}

func TestCommerceFlow(t *testing.T) {
	e := newTestEnv(t)
	sh := e.shop()
	owner, bob := e.token(auth.RoleCreator, "alice"), e.token(auth.RoleViewer, "bob")
	if sh.sale.Status != "active" || sh.sale.Remaining != 5 || sh.sale.PerUserLimit != 2 {
		t.Fatalf("sale: got %+v", sh.sale)
	}
	var p cart.Product
	resp, raw := e.do("GET", "/api/products/"+sh.product.ID, "", nil)
	e.expect(resp, raw, http.StatusOK, "", &p)
	if p.Stock != 5 {
		t.Fatalf("product stock after sale: got %d, want 5", p.Stock)
	}
	var pins struct{ Pinned []cart.Product }
	resp, raw = e.do("POST", "/api/streams/"+sh.st.ID+"/pins", owner, map[string]string{"product_id": sh.product.ID})
	e.expect(resp, raw, http.StatusOK, "", &pins)
	if len(pins.Pinned) != 1 {
		t.Fatalf("pins: got %d, want 1", len(pins.Pinned))
	}
	var h cart.Hold
	resp, raw = e.do("POST", "/api/cart/items", bob, map[string]any{"sale_id": sh.sale.ID, "quantity": 2})
	e.expect(resp, raw, http.StatusCreated, "", &h)
	if h.UnitPriceCents != 500 || h.SaleID != sh.sale.ID || h.StreamID != sh.st.ID || h.Currency != "EUR" {
		t.Fatalf("hold: got %+v", h)
	}
	resp, raw = e.do("POST", "/api/cart/items", bob, map[string]any{"sale_id": sh.sale.ID, "quantity": 1})
	e.expect(resp, raw, http.StatusConflict, "limit_exceeded", nil)
	resp, raw = e.do("POST", "/api/cart/items", bob, map[string]any{"product_id": sh.product.ID, "quantity": 1})
	e.expect(resp, raw, http.StatusCreated, "", nil)
	var c cart.Cart
	resp, raw = e.do("GET", "/api/cart", bob, nil)
	e.expect(resp, raw, http.StatusOK, "", &c)
	if len(c.Items) != 2 || c.TotalCents != 2000 || len(c.Totals) != 1 || c.Totals[0] != (cart.CurrencyTotal{Currency: c.Items[0].Currency, TotalCents: 2000}) {
		t.Fatalf("cart: got %d items total %d totals %+v, want 2 and 2000 in one currency", len(c.Items), c.TotalCents, c.Totals)
	}
	var o cart.Order
	resp, raw = e.doKey("POST", "/api/checkout", bob, "order-1", "")
	e.expect(resp, raw, http.StatusCreated, "", &o)
	if o.TotalCents != 2000 || len(o.Items) != 2 || o.Status != "placed" || o.UserID != "bob" || o.ExpiredHoldIDs == nil {
		t.Fatalf("order: got %+v", o)
	}
	var again cart.Order
	resp, raw = e.doKey("POST", "/api/checkout", bob, "order-1", "{}")
	e.expect(resp, raw, http.StatusOK, "", &again)
	if again.ID != o.ID {
		t.Fatalf("replay: got order %s, want %s", again.ID, o.ID)
	}
	resp, raw = e.doKey("POST", "/api/checkout", bob, "order-1", `{"stream_id":"`+sh.st.ID+`"}`)
	e.expect(resp, raw, http.StatusConflict, "conflict", nil)
	var orders []cart.Order
	resp, raw = e.do("GET", "/api/orders", bob, nil)
	e.expect(resp, raw, http.StatusOK, "", &orders)
	if len(orders) != 1 {
		t.Fatalf("orders: got %d, want 1", len(orders))
	}
	resp, raw = e.do("GET", "/api/streams/"+sh.st.ID+"/orders", owner, nil)
	e.expect(resp, raw, http.StatusOK, "", &orders)
	if len(orders) != 1 {
		t.Fatalf("stream orders: got %d, want 1", len(orders))
	}
	var sale cart.Sale
	resp, raw = e.do("POST", "/api/sales/"+sh.sale.ID+"/stop", e.token(auth.RoleModerator, "mia"), nil)
	e.expect(resp, raw, http.StatusOK, "", &sale)
	if sale.Status != "ended" || sale.Sold != 2 || sale.Returned != 3 || sale.Remaining != 0 {
		t.Fatalf("stopped sale: got %+v", sale)
	}
	var hidden cart.Product
	resp, raw = e.do("PATCH", "/api/products/"+sh.product.ID, e.token(auth.RoleModerator, "mia"), map[string]bool{"hidden": true})
	e.expect(resp, raw, http.StatusOK, "", &hidden)
	if !hidden.Hidden || hidden.Stock != 7 || hidden.Sold != 1 {
		t.Fatalf("hidden product: got %+v, want hidden, stock 7 sold 1", hidden)
	}
	var list []cart.Product
	resp, raw = e.do("GET", "/api/streams/"+sh.st.ID+"/products", "", nil)
	e.expect(resp, raw, http.StatusOK, "", &list)
	if len(list) != 0 {
		t.Fatalf("public product list: got %d, want 0 (hidden)", len(list))
	}
	resp, raw = e.do("GET", "/api/streams/"+sh.st.ID+"/products", owner, nil)
	e.expect(resp, raw, http.StatusOK, "", &list)
	if len(list) != 1 {
		t.Fatalf("owner's product list: got %d, want 1", len(list))
	}
	resp, raw = e.do("GET", "/api/streams/"+sh.st.ID+"/pins", "", nil)
	e.expect(resp, raw, http.StatusOK, "", &pins)
	if len(pins.Pinned) != 0 {
		t.Fatalf("pins after hide: got %d, want 0", len(pins.Pinned))
	}
	var audit []cart.AuditEntry
	resp, raw = e.do("GET", "/api/streams/"+sh.st.ID+"/audit", owner, nil)
	e.expect(resp, raw, http.StatusOK, "", &audit)
	var actions []string
	for _, a := range audit {
		actions = append(actions, a.Action)
	}
	if got, want := strings.Join(actions, ","), "product_create,sale_create,pin,sale_stop,hide"; got != want {
		t.Fatalf("audit: got %s, want %s", got, want)
	}
	resp, raw = e.do("GET", "/metrics", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: got %d", resp.StatusCode)
	}
	for _, want := range []string{`livecart_commerce_total{op="hold",outcome="limit_exceeded"} 1`,
		`livecart_commerce_total{op="checkout",outcome="replayed"} 1`, `livecart_commerce_total{op="hold",outcome="created"} 2`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("metrics: missing %s", want)
		}
	}
}

func TestCommerceBadInput(t *testing.T) {
	e := newTestEnv(t)
	sh := e.shop()
	other := e.shop()
	owner, bob := e.token(auth.RoleCreator, "alice"), e.token(auth.RoleViewer, "bob")
	carol, mia := e.token(auth.RoleCreator, "carol"), e.token(auth.RoleModerator, "mia")
	products, sales := "/api/streams/"+sh.st.ID+"/products", "/api/streams/"+sh.st.ID+"/sales"
	prod := func(kv ...any) map[string]any {
		m := map[string]any{"sku": "A", "title": "B", "price_cents": 1, "currency": "EUR", "stock": 1}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	sale := func(kv ...any) map[string]any {
		m := map[string]any{"product_id": sh.product.ID, "price_cents": 1, "quantity": 1, "duration_s": 60}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	missing := uuid.NewString()
	e.do("PATCH", "/api/products/"+other.product.ID, e.token(auth.RoleCreator, "alice"), map[string]bool{"hidden": true})
	for _, tc := range []struct {
		name, method, path, token string
		body                      any
		status                    int
		code                      string
	}{
		{"anonymous product", "POST", products, "", prod(), 401, "unauthorized"},
		{"bad token", "POST", products, "nope", prod(), 401, "unauthorized"},
		{"unknown stream", "POST", "/api/streams/" + missing + "/products", owner, prod(), 404, "not_found"},
		{"stream id not a uuid", "POST", "/api/streams/x/products", owner, prod(), 404, "not_found"},
		{"foreign creator", "POST", products, carol, prod(), 403, "forbidden"},
		{"viewer creates product", "POST", products, bob, prod(), 403, "forbidden"},
		{"moderator creates product", "POST", products, mia, prod(), 403, "forbidden"},
		{"negative price", "POST", products, owner, prod("price_cents", -1), 400, "bad_request"},
		{"fractional price", "POST", products, owner, prod("price_cents", 1.5), 400, "bad_request"},
		{"huge stock", "POST", products, owner, prod("stock", 1000001), 400, "bad_request"},
		{"bad currency", "POST", products, owner, prod("currency", "euro"), 400, "bad_request"},
		{"NUL in title", "POST", products, owner, prod("title", "Cap\u0000"), 400, "bad_request"},
		{"escape sequence in sku", "POST", products, owner, prod("sku", "\u001b[31mS"), 400, "bad_request"},
		{"C1 control in image_url", "POST", products, owner, prod("image_url", "https://x/\u0085.png"), 400, "bad_request"},
		{"form feed in description", "POST", products, owner, prod("description", "a\fb"), 400, "bad_request"},
		{"javascript: image_url", "POST", products, owner, prod("image_url", "javascript:alert(1)"), 400, "bad_request"},
		{"data: image_url", "POST", products, owner, prod("image_url", "data:image/gif;base64,R0lGODlhAQABAAAAACw="), 400, "bad_request"},
		{"relative image_url (kept; the pages show the initial)", "POST", products, owner, prod("image_url", "/img/cap.png"), 201, ""},
		{"scheme-less image_url (kept)", "POST", products, owner, prod("image_url", "//cdn.example/cap.png"), 201, ""},
		{"vbscript: image_url", "POST", products, owner, prod("image_url", "VBScript:msgbox(1)"), 400, "bad_request"},
		{"image_url without a host", "POST", products, owner, prod("image_url", "https:///cap.png"), 400, "bad_request"},
		{"opaque https image_url", "POST", products, owner, prod("image_url", "https:cap.png"), 400, "bad_request"},
		{"ftp image_url", "POST", products, owner, prod("image_url", "ftp://cdn.example/cap.png"), 400, "bad_request"},
		{"image_url with a space", "POST", products, owner, prod("image_url", "https://cdn.example/a cap.png"), 400, "bad_request"},
		{"http image_url, scheme in capitals", "POST", products, owner, prod("image_url", "HTTP://cdn.example/cap.png"), 201, ""},
		{"https image_url", "POST", products, owner, prod("image_url", "https://cdn.example/cap.png?w=200"), 201, ""},
		{"duplicate field", "POST", products, owner, `{"sku":"S","title":"T","price_cents":100,"price_cents":1,"currency":"EUR","stock":5}`, 400, "bad_request"},
		{"line breaks and a tab in description", "POST", products, owner, prod("description", "one\r\ntwo\tthree"), 201, ""},
		{"unknown field", "POST", products, owner, prod("color", "red"), 400, "bad_request"},
		{"field name in another case", "POST", products, owner, `{"sku":"S","title":"T","Price_Cents":100,"currency":"EUR","stock":5}`, 400, "bad_request"},
		{"not json", "POST", products, owner, "{", 400, "bad_request"},
		{"other currency", "POST", products, owner, prod("currency", "USD"), 409, "conflict"},
		{"too large", "POST", products, owner, prod("description", strings.Repeat("x", 70000)), 413, "payload_too_large"},
		{"sale quantity 0", "POST", sales, owner, sale("quantity", 0), 400, "bad_request"},
		// API.md bounds a sale's quantity only below (≥ 1): more units than the product
		// has, however many, is the business rule's 409.
		{"sale quantity over any stock", "POST", sales, owner, sale("quantity", 1_000_001), 409, "conflict"},
		{"sale quantity huge", "POST", sales, owner, sale("quantity", int64(1)<<62), 409, "conflict"},
		{"sale quantity beyond 64 bits", "POST", sales, owner, `{"product_id":"` + sh.product.ID + `","price_cents":1,"quantity":99999999999999999999,"duration_s":60}`, 409, "conflict"},
		{"sale quantity beyond 64 bits, negative", "POST", sales, owner, `{"product_id":"` + sh.product.ID + `","price_cents":1,"quantity":-99999999999999999999,"duration_s":60}`, 400, "bad_request"},
		{"sale quantity beyond 64 bits, fractional", "POST", sales, owner, `{"product_id":"` + sh.product.ID + `","price_cents":1,"quantity":99999999999999999999.5,"duration_s":60}`, 400, "bad_request"},
		{"sale quantity beyond 64 bits, no duration", "POST", sales, owner, `{"product_id":"` + sh.product.ID + `","price_cents":1,"quantity":99999999999999999999}`, 400, "bad_request"},
		{"sale quantity beyond 64 bits, unknown field", "POST", sales, owner, `{"product_id":"` + sh.product.ID + `","price_cents":1,"quantity":99999999999999999999,"duration_s":60,"x":1}`, 400, "bad_request"},
		{"sale quantity huge, unknown product", "POST", sales, owner, sale("quantity", 1e9, "product_id", missing), 404, "not_found"},
		{"sale limit over quantity", "POST", sales, owner, sale("per_user_limit", 2), 400, "bad_request"},
		{"sale duration 0", "POST", sales, owner, sale("duration_s", 0), 400, "bad_request"},
		{"sale negative price", "POST", sales, owner, sale("price_cents", -5), 400, "bad_request"},
		{"sale of another stream's product", "POST", sales, owner, sale("product_id", other.product.ID), 404, "not_found"},
		{"sale over stock", "POST", sales, owner, sale("quantity", 6), 409, "conflict"},
		{"sale foreign creator", "POST", sales, carol, sale(), 403, "forbidden"},
		{"stop sale anonymous", "POST", "/api/sales/" + sh.sale.ID + "/stop", "", nil, 401, "unauthorized"},
		{"stop unknown sale", "POST", "/api/sales/" + missing + "/stop", owner, nil, 404, "not_found"},
		{"stop sale viewer", "POST", "/api/sales/" + sh.sale.ID + "/stop", bob, nil, 403, "forbidden"},
		{"stop sale foreign creator", "POST", "/api/sales/" + sh.sale.ID + "/stop", carol, nil, 403, "forbidden"},
		{"hide viewer", "PATCH", "/api/products/" + sh.product.ID, bob, map[string]bool{"hidden": true}, 403, "forbidden"},
		{"hide without field", "PATCH", "/api/products/" + sh.product.ID, owner, map[string]any{}, 400, "bad_request"},
		{"hide unknown", "PATCH", "/api/products/" + missing, owner, map[string]bool{"hidden": true}, 404, "not_found"},
		{"pin hidden", "POST", "/api/streams/" + other.st.ID + "/pins", owner, map[string]string{"product_id": other.product.ID}, 409, "conflict"},
		{"pin other stream's product", "POST", "/api/streams/" + sh.st.ID + "/pins", owner, map[string]string{"product_id": other.product.ID}, 404, "not_found"},
		{"pin not a uuid", "POST", "/api/streams/" + sh.st.ID + "/pins", owner, map[string]string{"product_id": "x"}, 404, "not_found"},
		{"unpin anonymous", "DELETE", "/api/streams/" + sh.st.ID + "/pins/" + sh.product.ID, "", nil, 401, "unauthorized"},
		{"unpin not a uuid by viewer", "DELETE", "/api/streams/" + sh.st.ID + "/pins/x", bob, nil, 404, "not_found"},
		{"unpin unknown product by viewer", "DELETE", "/api/streams/" + sh.st.ID + "/pins/" + missing, bob, nil, 404, "not_found"},
		{"unpin other stream's product by viewer", "DELETE", "/api/streams/" + sh.st.ID + "/pins/" + other.product.ID, bob, nil, 404, "not_found"},
		{"unpin by viewer", "DELETE", "/api/streams/" + sh.st.ID + "/pins/" + sh.product.ID, bob, nil, 403, "forbidden"},
		{"unpin by foreign creator", "DELETE", "/api/streams/" + sh.st.ID + "/pins/" + sh.product.ID, carol, nil, 403, "forbidden"},
		{"unpin other stream's product by owner", "DELETE", "/api/streams/" + sh.st.ID + "/pins/" + other.product.ID, owner, nil, 404, "not_found"},
		{"pin by moderator", "POST", "/api/streams/" + sh.st.ID + "/pins", mia, map[string]string{"product_id": sh.product.ID}, 403, "forbidden"},
		{"hold anonymous", "POST", "/api/cart/items", "", map[string]any{"sale_id": sh.sale.ID, "quantity": 1}, 401, "unauthorized"},
		{"hold quantity 0", "POST", "/api/cart/items", bob, map[string]any{"sale_id": sh.sale.ID, "quantity": 0}, 400, "bad_request"},
		{"hold quantity 101", "POST", "/api/cart/items", bob, map[string]any{"product_id": sh.product.ID, "quantity": 101}, 400, "bad_request"},
		{"hold no id", "POST", "/api/cart/items", bob, map[string]any{"quantity": 1}, 400, "bad_request"},
		{"hold body null", "POST", "/api/cart/items", bob, "null", 400, "bad_request"},
		{"pin body null", "POST", "/api/streams/" + sh.st.ID + "/pins", owner, " null ", 400, "bad_request"},
		{"hold both ids", "POST", "/api/cart/items", bob, map[string]any{"sale_id": sh.sale.ID, "product_id": sh.product.ID, "quantity": 1}, 400, "bad_request"},
		// The hold's compact body is decoded by hand (cart.NewItem.DecodeFastJSON).
		{"hold quantity twice", "POST", "/api/cart/items", bob, `{"product_id":"` + sh.product.ID + `","quantity":1,"quantity":2}`, 400, "bad_request"},
		{"hold product_id twice", "POST", "/api/cart/items", bob, `{"product_id":"` + missing + `","product_id":"` + sh.product.ID + `","quantity":1}`, 400, "bad_request"},
		{"hold quantity twice, once escaped", "POST", "/api/cart/items", bob, `{"product_id":"` + sh.product.ID + `","qu\u0061ntity":1,"quantity":1}`, 400, "bad_request"},
		{"hold hidden product", "POST", "/api/cart/items", bob, map[string]any{"product_id": other.product.ID, "quantity": 1}, 404, "not_found"},
		{"hold hidden product's sale", "POST", "/api/cart/items", bob, map[string]any{"sale_id": other.sale.ID, "quantity": 1}, 404, "not_found"},
		{"hold unknown sale", "POST", "/api/cart/items", bob, map[string]any{"sale_id": missing, "quantity": 1}, 404, "not_found"},
		{"hold sold out", "POST", "/api/cart/items", bob, map[string]any{"product_id": sh.product.ID, "quantity": 6}, 409, "sold_out"},
		{"remove unknown hold", "DELETE", "/api/cart/items/" + missing, bob, nil, 404, "not_found"},
		{"cart anonymous", "GET", "/api/cart", "", nil, 401, "unauthorized"},
		{"orders anonymous", "GET", "/api/orders", "", nil, 401, "unauthorized"},
		{"stream orders viewer", "GET", "/api/streams/" + sh.st.ID + "/orders", bob, nil, 403, "forbidden"},
		{"stream orders moderator", "GET", "/api/streams/" + sh.st.ID + "/orders", mia, nil, 403, "forbidden"},
		{"stream orders foreign creator", "GET", "/api/streams/" + sh.st.ID + "/orders", carol, nil, 403, "forbidden"},
		{"stream orders anonymous", "GET", "/api/streams/" + sh.st.ID + "/orders", "", nil, 401, "unauthorized"},
		{"stream orders unknown stream", "GET", "/api/streams/" + missing + "/orders", bob, nil, 404, "not_found"},
		{"audit foreign creator", "GET", "/api/streams/" + sh.st.ID + "/audit", carol, nil, 403, "forbidden"},
		{"hide by foreign creator", "PATCH", "/api/products/" + sh.product.ID, carol, map[string]bool{"hidden": true}, 403, "forbidden"},
		{"hide unknown before role", "PATCH", "/api/products/" + missing, bob, map[string]bool{"hidden": true}, 404, "not_found"},
		{"stop unknown sale before role", "POST", "/api/sales/" + missing + "/stop", bob, nil, 404, "not_found"},
		{"sale unknown stream before role", "POST", "/api/streams/" + missing + "/sales", bob, sale(), 404, "not_found"},
		{"hidden product read by viewer", "GET", "/api/products/" + other.product.ID, bob, nil, 404, "not_found"},
		{"moderator holds 101", "POST", "/api/cart/items", mia, map[string]any{"product_id": sh.product.ID, "quantity": 101}, 400, "bad_request"},
		{"products of unknown stream", "GET", "/api/streams/" + missing + "/products", "", nil, 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			resp, raw := e.do(tc.method, tc.path, tc.token, tc.body)
			e.expect(resp, raw, tc.status, tc.code, nil)
		})
	}
	e.t = t
	// Nothing above changed the stock.
	var p cart.Product
	resp, raw := e.do("GET", "/api/products/"+sh.product.ID, owner, nil)
	e.expect(resp, raw, http.StatusOK, "", &p)
	if p.Stock != 5 || p.Held != 0 {
		t.Fatalf("product after bad input: got stock %d held %d, want 5 0", p.Stock, p.Held)
	}
	for _, tc := range []struct {
		name, key, body string
		status          int
		code            string
	}{
		{"no key", "-", "", 400, "bad_request"},
		{"empty key", "", "", 400, "bad_request"},
		{"long key", strings.Repeat("k", 256), "", 400, "bad_request"},
		{"long wide key", strings.Repeat("é", 256), "", 400, "bad_request"},
		{"longest key (empty cart)", strings.Repeat("k", 255), "", 409, "conflict"},
		{"longest wide key (empty cart)", strings.Repeat("é", 255), "", 409, "conflict"},
		{"unknown field", "k", `{"coupon":"x"}`, 400, "bad_request"},
		{"duplicate field", "k", `{"stream_id":"` + missing + `","stream_id":"` + sh.st.ID + `"}`, 400, "bad_request"},
		{"body null (not an object; only an empty body means {})", "k", "null", 400, "bad_request"},
		{"hold not a uuid", "k", `{"hold_ids":["x"]}`, 404, "not_found"},
		{"unknown hold", "k", `{"hold_ids":["` + missing + `"]}`, 404, "not_found"},
		{"stream not a uuid", "k", `{"stream_id":"x"}`, 404, "not_found"},
		{"unknown stream", "k", `{"stream_id":"` + missing + `"}`, 404, "not_found"},
		{"empty cart", "k", "", 409, "conflict"},
	} {
		resp, raw := e.doKey("POST", "/api/checkout", bob, tc.key, tc.body)
		if resp.StatusCode != tc.status || !bytes.Contains(raw, []byte(`"`+tc.code+`"`)) {
			t.Errorf("checkout %s: got %d %s, want %d %s", tc.name, resp.StatusCode, raw, tc.status, tc.code)
		}
	}
	resp, raw = e.doKey("POST", "/api/checkout", "", "k", "")
	if resp.StatusCode != 401 {
		t.Errorf("checkout anonymous: got %d %s, want 401", resp.StatusCode, raw)
	}
}

// TestCommerceStormHTTP: 300 buyers race over HTTP for 50 units; exactly 50 win.
func TestCommerceStormHTTP(t *testing.T) {
	e := newTestEnv(t)
	sh := e.shop()
	owner := e.token(auth.RoleCreator, "alice")
	var big cart.Product
	resp, raw := e.do("POST", "/api/streams/"+sh.st.ID+"/products", owner,
		map[string]any{"sku": "B", "title": "B", "price_cents": 1, "currency": "EUR", "stock": 50})
	e.expect(resp, raw, http.StatusCreated, "", &big)
	var s cart.Sale
	resp, raw = e.do("POST", "/api/streams/"+sh.st.ID+"/sales", owner,
		map[string]any{"product_id": big.ID, "price_cents": 1, "quantity": 50, "duration_s": 60})
	e.expect(resp, raw, http.StatusCreated, "", &s)
	tokens := make([]string, 300)
	for i := range tokens {
		tokens[i] = e.token(auth.RoleViewer, "buyer-"+uuid.NewString())
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for _, tok := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(map[string]any{"sale_id": s.ID, "quantity": 1})
			req, _ := http.NewRequest("POST", e.srv.URL+"/api/cart/items", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 201 {
				r2, raw := e.doKey("POST", "/api/checkout", tok, "k", "")
				if r2.StatusCode != 201 {
					t.Errorf("checkout: got %d %s", r2.StatusCode, raw)
				}
			}
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[201] != 50 || codes[409] != 250 {
		t.Fatalf("got statuses %v, want 50×201 and 250×409", codes)
	}
	resp, raw = e.do("GET", "/api/streams/"+sh.st.ID+"/sales", "", nil)
	var list []cart.Sale
	e.expect(resp, raw, http.StatusOK, "", &list)
	for _, got := range list {
		if got.ID == s.ID && (got.Sold != 50 || got.Remaining != 0 || got.Held != 0) {
			t.Fatalf("sale: got %+v, want 50 sold", got)
		}
	}
}

// TestCommerceRangeBounds: every range of API.md accepts both of its bounds (the values
// just outside are refused in TestCommerceBadInput).
func TestCommerceRangeBounds(t *testing.T) {
	e := newTestEnv(t)
	st := e.createStream("alice")
	owner, bob := e.token(auth.RoleCreator, "alice"), e.token(auth.RoleViewer, "bob")
	var zero, big cart.Product
	resp, raw := e.do("POST", "/api/streams/"+st.ID+"/products", owner,
		map[string]any{"sku": "Z", "title": "free, none", "price_cents": 0, "currency": "EUR", "stock": 0})
	e.expect(resp, raw, http.StatusCreated, "", &zero)
	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/products", owner,
		map[string]any{"sku": "B", "title": "many", "price_cents": 1, "currency": "EUR", "stock": 1_000_000})
	e.expect(resp, raw, http.StatusCreated, "", &big)
	if zero.PriceCents != 0 || zero.Stock != 0 || big.Stock != 1_000_000 {
		t.Fatalf("products: got %+v and %+v", zero, big)
	}
	var one, all cart.Sale
	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/sales", owner,
		map[string]any{"product_id": big.ID, "price_cents": 0, "quantity": 1, "per_user_limit": 1, "duration_s": 1})
	e.expect(resp, raw, http.StatusCreated, "", &one)
	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/sales", owner,
		map[string]any{"product_id": big.ID, "price_cents": 0, "quantity": 500, "per_user_limit": 500, "duration_s": 600, "starts_in_s": 0})
	e.expect(resp, raw, http.StatusCreated, "", &all)
	if one.PerUserLimit != 1 || !one.EndsAt.Equal(one.StartsAt.Add(time.Second)) || all.PerUserLimit != 500 || all.Status != "active" {
		t.Fatalf("sales: got %+v and %+v", one, all)
	}
	var h cart.Hold
	resp, raw = e.do("POST", "/api/cart/items", bob, map[string]any{"sale_id": all.ID, "quantity": 100})
	e.expect(resp, raw, http.StatusCreated, "", &h)
	resp, raw = e.do("POST", "/api/cart/items", bob, map[string]any{"product_id": big.ID, "quantity": 100})
	e.expect(resp, raw, http.StatusCreated, "", nil)
	resp, raw = e.do("POST", "/api/cart/items", bob, map[string]any{"product_id": big.ID, "quantity": 1})
	e.expect(resp, raw, http.StatusCreated, "", nil)
	if h.Quantity != 100 || h.UnitPriceCents != 0 {
		t.Fatalf("hold: got %+v", h)
	}
	// A sale without per_user_limit allows 1 per buyer.
	var def cart.Sale
	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/sales", owner,
		map[string]any{"product_id": big.ID, "price_cents": 5, "quantity": 3, "duration_s": 60})
	e.expect(resp, raw, http.StatusCreated, "", &def)
	if def.PerUserLimit != 1 {
		t.Fatalf("default per_user_limit: got %d, want 1", def.PerUserLimit)
	}
	resp, raw = e.do("POST", "/api/cart/items", bob, map[string]any{"sale_id": def.ID, "quantity": 2})
	e.expect(resp, raw, http.StatusConflict, "limit_exceeded", nil)
}

// TestAdminMayDoEverything: an admin acts on a stream it did not create wherever the
// owner may (API.md: admin = everything), and sees the stream key.
func TestAdminMayDoEverything(t *testing.T) {
	e := newLiveEnv(t)
	sh := e.shop()
	admin := e.token(auth.RoleAdmin, "root")
	sid := sh.st.ID
	var st StreamView
	resp, raw := e.do("GET", "/api/streams/"+sid, admin, nil)
	e.expect(resp, raw, http.StatusOK, "", &st)
	if st.StreamKey == "" {
		t.Fatal("admin: no stream_key in the stream")
	}
	var p cart.Product
	resp, raw = e.do("POST", "/api/streams/"+sid+"/products", admin,
		map[string]any{"sku": "ADM", "title": "by admin", "price_cents": 1, "currency": "EUR", "stock": 5})
	e.expect(resp, raw, http.StatusCreated, "", &p)
	var s cart.Sale
	resp, raw = e.do("POST", "/api/streams/"+sid+"/sales", admin,
		map[string]any{"product_id": p.ID, "price_cents": 1, "quantity": 2, "duration_s": 60})
	e.expect(resp, raw, http.StatusCreated, "", &s)
	for _, step := range []struct {
		method, path string
		body         any
		status       int
	}{
		{"POST", "/api/streams/" + sid + "/pins", map[string]string{"product_id": p.ID}, 200},
		{"DELETE", "/api/streams/" + sid + "/pins/" + p.ID, nil, 200},
		{"PATCH", "/api/products/" + p.ID, map[string]bool{"hidden": true}, 200},
		{"POST", "/api/sales/" + s.ID + "/stop", nil, 200},
		{"POST", "/api/streams/" + sid + "/mutes", map[string]any{"user_id": "bob", "duration_s": 10}, 201},
		{"DELETE", "/api/streams/" + sid + "/mutes/bob", nil, 204},
		{"DELETE", "/api/streams/" + sid + "/chat/" + uuid.NewString(), nil, 204},
		{"POST", "/api/cart/items", map[string]any{"product_id": sh.product.ID, "quantity": 1}, 201},
		{"GET", "/api/streams/" + sid + "/orders", nil, 200},
		{"GET", "/api/streams/" + sid + "/audit", nil, 200},
		{"POST", "/api/streams/" + sid + "/end", nil, 200},
	} {
		resp, raw := e.do(step.method, step.path, admin, step.body)
		e.expect(resp, raw, step.status, "", nil)
	}
	var audit []cart.AuditEntry
	resp, raw = e.do("GET", "/api/streams/"+sid+"/audit", admin, nil)
	e.expect(resp, raw, http.StatusOK, "", &audit)
	var byAdmin []string
	for _, a := range audit {
		if a.ActorID == "root" && a.ActorRole == "admin" {
			byAdmin = append(byAdmin, a.Action)
		}
	}
	if got, want := strings.Join(byAdmin, ","), "product_create,sale_create,pin,unpin,hide,sale_stop,mute,unmute,chat_delete,stream_end"; got != want {
		t.Fatalf("admin's audit entries: got %s, want %s", got, want)
	}
}

// TestCreatedNamesItsLocation: a 201 of a stream, product or sale carries Location, the
// path that reads what was made (RFC 9110 §15.3.2; it had none, so a client had the body's
// id to go by only), and GET of it answers the same resource.
func TestCreatedNamesItsLocation(t *testing.T) {
	e := newTestEnv(t)
	owner := e.token(auth.RoleCreator, "alice")
	resp, raw := e.do("POST", "/api/streams", owner, map[string]string{"title": "located"})
	var st StreamView
	e.expect(resp, raw, http.StatusCreated, "", &st)
	created := []struct{ loc, id string }{{resp.Header.Get("Location"), st.ID}}
	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/products", owner, map[string]any{"sku": "L-1", "title": "Lamp",
		"price_cents": 900, "currency": "EUR", "stock": 3})
	var p cart.Product
	e.expect(resp, raw, http.StatusCreated, "", &p)
	created = append(created, struct{ loc, id string }{resp.Header.Get("Location"), p.ID})
	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/sales", owner, map[string]any{"product_id": p.ID,
		"price_cents": 500, "quantity": 2, "duration_s": 60})
	var sale cart.Sale
	e.expect(resp, raw, http.StatusCreated, "", &sale)
	created = append(created, struct{ loc, id string }{resp.Header.Get("Location"), sale.ID})
	for i, want := range []string{"/api/streams/" + st.ID, "/api/products/" + p.ID, "/api/sales/" + sale.ID} {
		if created[i].loc != want {
			t.Errorf("Location %q, want %q", created[i].loc, want)
			continue
		}
		var got struct{ ID string }
		resp, raw = e.do("GET", created[i].loc, "", nil)
		e.expect(resp, raw, http.StatusOK, "", &got)
		if got.ID != created[i].id {
			t.Errorf("GET %s: got id %q, want %q", created[i].loc, got.ID, created[i].id)
		}
	}
}
