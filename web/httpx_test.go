package web

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/livecart/livecart/cart"
)

// writeAppended answers exactly as writeJSON does: status, headers and body bytes.
func TestWriteAppendedMatchesWriteJSON(t *testing.T) {
	at := time.Date(2026, 12, 2, 1, 2, 3, 456000000, time.UTC)
	h := cart.Hold{ID: "0190f3a4-1b2c-7d3e-8f40-123456789abc", UserID: "u", StreamID: "s<&>", ProductID: "p",
		SaleID: "sa", Quantity: 1, UnitPriceCents: 50, Currency: "EUR", ExpiresAt: at}
	o := cart.Order{ID: "o", UserID: "u\x00\"", StreamID: "s", Items: []cart.OrderItem{{ProductID: "p", Quantity: 2, UnitPriceCents: 7}},
		TotalCents: 14, Currency: "EUR", Status: "placed", CreatedAt: at, ExpiredHoldIDs: []string{}}
	bad := cart.Hold{ExpiresAt: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)} // json.Marshal refuses it
	for _, c := range []struct {
		name   string
		status int
		app    func([]byte) ([]byte, bool)
		v      any
	}{{"hold", http.StatusCreated, h.AppendJSON, h}, {"order", http.StatusOK, o.AppendJSON, o},
		{"order without items", http.StatusCreated, cart.Order{}.AppendJSON, cart.Order{}}, {"bad time", http.StatusCreated, bad.AppendJSON, bad}} {
		want, got := httptest.NewRecorder(), httptest.NewRecorder()
		writeJSON(want, c.status, c.v)
		writeAppended(got, c.status, c.app, c.v)
		if got.Code != want.Code || got.Body.String() != want.Body.String() || !reflect.DeepEqual(got.Header(), want.Header()) {
			t.Errorf("%s: got %d %v %q, want %d %v %q", c.name, got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
		}
	}
}

// plainNewItem is cart.NewItem without its hand-written decoder.
type plainNewItem cart.NewItem

// decodeJSON answers a hold's body with its hand-written fast path exactly as with
// encoding/json alone: the same value, or the same error.
func TestDecodeNewItemMatchesEncodingJSON(t *testing.T) {
	sid := "0190f3a4-1b2c-7d3e-8f40-123456789abc"
	bodies := []string{
		`{"sale_id":"` + sid + `","quantity":1}`, `{"quantity":2,"product_id":"` + sid + `"}`, "  \n" + `{"sale_id":"x","quantity":100}` + "\n",
		`{"sale_id":"x","product_id":"y","quantity":-5}`, `{"sale_id":"x"}`, `{}`, `{"quantity":1}`, `{"sale_id":"x","quantity":null}`,
		`{"sale_id":"x","quantity":1,"quantity":null}`, `{"sale_id":"a","sale_id":null,"quantity":1}`, `{"Sale_ID":"x","QUANTITY":1}`,
		`{"sale_id":"x","quantity":1.0}`, `{"sale_id":"x","quantity":01}`, `{"sale_id":"x","quantity":1e0}`, `{"sale_id":"x","quantity":"1"}`,
		`{"sale_id":"x","quantity":99999999999999999999}`, `{"sale_id":"x","quantity":1,"extra":true}`, `{"sale_id": "x", "quantity": 1}`,
		`{"sale_id":"\u0041","quantity":1}`, `{"sale_id":"é","quantity":1}`, `{"sale_id":"x","quantity":1}{}`, `{"sale_id":"x","quantity":1} x`,
		`{"sale_id":"x","quantity":1}]`, `{"sale_id":"x",}`, `{"sale_id":"x"`, `[1]`, `null`, `"x"`, `{"sale_id":1,"quantity":1}`,
		`{"sale_id":"x","quantity":true}`, `{"sale_id":"x","quantity":-0}`, `{"sale_id":"tab	x","quantity":1}`,
		// Space that bytes.TrimSpace trims but JSON does not allow around a value.
		"\f" + `{"sale_id":"x","quantity":1}`, `{"sale_id":"x","quantity":1}` + "\v", "\u00a0" + `{"sale_id":"x","quantity":1}`,
		`{"sale_id":"x","quantity":1}` + "\u0085", `{"sale_id":"x","quantity":1}` + "\u2028", "\r\n\t " + `{"quantity":3}` + " \r\n",
	}
	var in cart.NewItem
	if !in.DecodeFastJSON([]byte(bodies[0])) || in.SaleID != sid || in.Quantity == nil || *in.Quantity != 1 {
		t.Fatalf("the usual body does not take the fast path: %+v", in)
	}
	for _, body := range bodies {
		if diff := fastDecodeDiffers([]byte(body)); diff != "" {
			t.Errorf("%s: %s", body, diff)
		}
	}
}

// fastDecodeDiffers decodes a hold body through decodeJSON with the hand-written fast
// path and with encoding/json alone and says how the two differ ("" when they agree:
// the same value, or the same error message).
func fastDecodeDiffers(body []byte) string {
	decode := func(v any) error {
		r := httptest.NewRequest(http.MethodPost, "/api/cart/items", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		return decodeJSON(httptest.NewRecorder(), r, v)
	}
	var fast cart.NewItem
	var plain plainNewItem
	errFast, errPlain := decode(&fast), decode(&plain)
	msg := func(err error) string {
		if err == nil {
			return ""
		}
		return strings.NewReplacer("web.plainNewItem", "cart.NewItem", "plainNewItem", "NewItem").Replace(err.Error())
	}
	if msg(errFast) != msg(errPlain) || !reflect.DeepEqual(fast, cart.NewItem(plain)) {
		return fmt.Sprintf("got %+v %v, want %+v %v", fast, errFast, plain, errPlain)
	}
	return ""
}

// FuzzDecodeNewItem: any hold body gets the same value or the same error with the
// hand-written fast path as with encoding/json alone.
func FuzzDecodeNewItem(f *testing.F) {
	for _, s := range []string{`{"sale_id":"0190f3a4-1b2c-7d3e-8f40-123456789abc","quantity":1}`, `{"quantity":2,"product_id":"p"}`,
		`{"sale_id":"x","quantity":-0}`, `{"Sale_ID":"x","quantity":1}`, "\f{}", `{"sale_id":"\u0041","quantity":1e0}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if diff := fastDecodeDiffers(body); diff != "" {
			t.Fatalf("%q: %s", body, diff)
		}
	})
}

// Only JSON's white space makes a body empty (an empty checkout body means {}): \f, \v,
// U+00A0 and the like are not JSON, as encoding/json says.
func TestDecodeEmptyBodyIsJSONWhiteSpace(t *testing.T) {
	for _, body := range []string{"", " ", "\r\n\t "} {
		r := httptest.NewRequest(http.MethodPost, "/api/checkout", strings.NewReader(body))
		var in cart.CheckoutInput
		if err := decodeJSONOrEmpty(httptest.NewRecorder(), r, &in); err != nil {
			t.Errorf("%q: %v, want empty", body, err)
		}
	}
	for _, body := range []string{"\f", "\v", " \u00a0", "\u0085", "\u2028"} {
		r := httptest.NewRequest(http.MethodPost, "/api/checkout", strings.NewReader(body))
		var in cart.CheckoutInput
		err := decodeJSONOrEmpty(httptest.NewRecorder(), r, &in)
		if ae, ok := err.(*APIError); !ok || ae.Status != http.StatusBadRequest || !strings.HasPrefix(ae.Message, "invalid JSON") {
			t.Errorf("%q: %v, want 400 invalid JSON", body, err)
		}
	}
}
