package web

import (
	"encoding/json"
	"net/http"
	"testing"

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
			resp, raw := e.doHeaders(tc.method, tc.path, tc.token, tc.body, "Idempotency-Key", uuid.NewString())
			var er struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(raw, &er); err != nil {
				t.Fatalf("decode %s: %v", raw, err)
			}
			if resp.StatusCode != tc.status || er.Error.Code != tc.code || er.Error.Message != tc.message {
				t.Fatalf("got %d %q %q, want %d %q %q", resp.StatusCode, er.Error.Code, er.Error.Message, tc.status, tc.code, tc.message)
			}
		})
	}
}
