package web

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/live"
)

// writeHold and writeOrder answer exactly as writeJSON does: status, headers and body
// bytes.
func TestWriteAppendedMatchesWriteJSON(t *testing.T) {
	at := time.Date(2026, 12, 2, 1, 2, 3, 456000000, time.UTC)
	h := cart.Hold{ID: "0190f3a4-1b2c-7d3e-8f40-123456789abc", UserID: "u", StreamID: "s<&>", ProductID: "p",
		SaleID: "sa", Quantity: 1, UnitPriceCents: 50, Currency: "EUR", ExpiresAt: at}
	o := cart.Order{ID: "o", UserID: "u\x00\"", StreamID: "s", Items: []cart.OrderItem{{ProductID: "p", Quantity: 2, UnitPriceCents: 7}},
		TotalCents: 14, Currency: "EUR", Status: "placed", CreatedAt: at, ExpiredHoldIDs: []string{}}
	bad := cart.Hold{ExpiresAt: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)}    // json.Marshal refuses it
	badOrder := cart.Order{CreatedAt: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)} // and this
	for _, c := range []struct {
		name   string
		status int
		write  func(http.ResponseWriter, int)
		v      any
	}{
		{"hold", http.StatusCreated, func(w http.ResponseWriter, s int) { writeHold(w, s, &h) }, h},
		{"order", http.StatusOK, func(w http.ResponseWriter, s int) { writeOrder(w, s, &o) }, o},
		{"order without items", http.StatusCreated, func(w http.ResponseWriter, s int) { writeOrder(w, s, &cart.Order{}) }, cart.Order{}},
		{"bad time", http.StatusCreated, func(w http.ResponseWriter, s int) { writeHold(w, s, &bad) }, bad},
		{"bad order time", http.StatusCreated, func(w http.ResponseWriter, s int) { writeOrder(w, s, &badOrder) }, badOrder},
	} {
		for range 2 { // the second answer from a pooled buffer
			want, got := httptest.NewRecorder(), httptest.NewRecorder()
			writeJSON(want, c.status, c.v)
			c.write(got, c.status)
			if got.Code != want.Code || got.Body.String() != want.Body.String() || !reflect.DeepEqual(got.Header(), want.Header()) {
				t.Errorf("%s: got %d %v %q, want %d %v %q", c.name, got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
			}
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

// fastDecodeDiffers decodes a hold body through decodeNewItem (and decodeJSON) with the
// hand-written fast path and with encoding/json alone and says how they differ ("" when they agree:
// the same value, or the same error message).
func fastDecodeDiffers(body []byte) string {
	req := func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/api/cart/items", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	var plain plainNewItem
	errPlain := decodeJSON(httptest.NewRecorder(), req(), &plain)
	fast, errFast := decodeNewItem(httptest.NewRecorder(), req()) // the hold handler's
	var viaDecodeJSON cart.NewItem
	if err := decodeJSON(httptest.NewRecorder(), req(), &viaDecodeJSON); fmt.Sprint(err) != fmt.Sprint(errFast) || !reflect.DeepEqual(fast, viaDecodeJSON) {
		return fmt.Sprintf("decodeNewItem %+v %v, decodeJSON %+v %v", fast, errFast, viaDecodeJSON, err)
	}
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

// referenceDecode is decodeBody as it was before readBody (io.ReadAll through
// MaxBytesReader, mime.ParseMediaType of every Content-Type), without the fast path.
func referenceDecode(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxJSONBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apiError(http.StatusRequestEntityTooLarge, "payload_too_large", fmt.Sprintf("body over %d bytes", MaxJSONBody))
		}
		return apiError(http.StatusBadRequest, "bad_request", "cannot read body")
	}
	if len(bytes.Trim(raw, " \t\r\n")) == 0 {
		if emptyOK {
			return nil
		}
		return apiError(http.StatusBadRequest, "bad_request", "request body required")
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return apiError(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
		}
	}
	if !live.ValidJSONText(raw) {
		return apiError(http.StatusBadRequest, "bad_request", "invalid JSON: the body is not valid UTF-8, or escapes a lone surrogate")
	}
	return decodeRaw(raw, v)
}

// The hold and checkout handlers' readers (decodeNewItem, decodeCheckoutInput), and
// decodeJSON and decodeJSONOrEmpty, answer every body, length and content type as the
// reference does: the same value or the same error (413 over 64 KiB with or without a
// Content-Length, 415, 400).
func TestBodyReadersMatchDecodeJSON(t *testing.T) {
	sid := "0190f3a4-1b2c-7d3e-8f40-123456789abc"
	big := `{"sale_id":"` + strings.Repeat("x", MaxJSONBody) + `","quantity":1}`
	exact := `{"stream_id":"` + strings.Repeat("y", MaxJSONBody-16) + `"}`
	bodies := []string{"", " \n", `{"sale_id":"` + sid + `","quantity":1}`, `{"stream_id":"` + sid + `","hold_ids":["` + sid + `"]}`,
		`{"hold_ids":[]}`, `{"Stream_ID":"x"}`, `{"stream_id":"x"} {}`, "\xff", `{"sale_id":"x","quantity":1,"zz":1}`, `null`,
		big, exact, exact + " "}
	types := []string{"", "application/json", "application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json",
		"text/plain", "application/json;;", "application/jsonx"}
	for _, body := range bodies {
		for _, ct := range types {
			for _, chunked := range []bool{false, true} {
				req := func() *http.Request {
					r := httptest.NewRequest(http.MethodPost, "/api/checkout", strings.NewReader(body))
					if ct != "" {
						r.Header.Set("Content-Type", ct)
					}
					if chunked {
						r.ContentLength = -1
					}
					return r
				}
				name := fmt.Sprintf("%.40q (%d bytes) %q chunked=%v", body, len(body), ct, chunked)
				var item plainNewItem
				err := referenceDecode(httptest.NewRecorder(), req(), &item, false)
				want := fmt.Sprintf("%s %v", itemString(cart.NewItem(item)), strings.ReplaceAll(fmt.Sprint(err), "web.plainNewItem", "cart.NewItem"))
				gotItem, gotErr := decodeNewItem(httptest.NewRecorder(), req())
				if got := fmt.Sprintf("%s %v", itemString(gotItem), gotErr); got != want {
					t.Errorf("hold %s: decodeNewItem %s, want %s", name, got, want)
				}
				var viaDecodeJSON cart.NewItem
				gotErr = decodeJSON(httptest.NewRecorder(), req(), &viaDecodeJSON)
				if got := fmt.Sprintf("%s %v", itemString(viaDecodeJSON), gotErr); got != want {
					t.Errorf("hold %s: decodeJSON %s, want %s", name, got, want)
				}
				var co cart.CheckoutInput
				err = referenceDecode(httptest.NewRecorder(), req(), &co, true)
				want = fmt.Sprintf("%+v %v", co, err)
				gotCo, gotErr := decodeCheckoutInput(httptest.NewRecorder(), req())
				if got := fmt.Sprintf("%+v %v", gotCo, gotErr); got != want {
					t.Errorf("checkout %s: decodeCheckoutInput %s, want %s", name, got, want)
				}
				var viaOrEmpty cart.CheckoutInput
				gotErr = decodeJSONOrEmpty(httptest.NewRecorder(), req(), &viaOrEmpty)
				if got := fmt.Sprintf("%+v %v", viaOrEmpty, gotErr); got != want {
					t.Errorf("checkout %s: decodeJSONOrEmpty %s, want %s", name, got, want)
				}
			}
		}
	}
}

// itemString shows a NewItem with its quantity's value (not its address).
func itemString(in cart.NewItem) string {
	q := "nil"
	if in.Quantity != nil {
		q = fmt.Sprint(*in.Quantity)
	}
	return fmt.Sprintf("{%q %q %s}", in.ProductID, in.SaleID, q)
}

// TestOversizeBodyRefusedUnread: a JSON body whose Content-Length is over 64 KiB is
// refused 413 before it is read, so a client that asks "Expect: 100-continue" (curl does
// above 1 MB) gets the 413 at once and is not asked to send it (it got "100 Continue"
// and the server waited for the whole gigabyte). The hold and checkout readers too.
func TestOversizeBodyRefusedUnread(t *testing.T) {
	e := newTestEnv(t)
	creator, viewer := e.token(auth.RoleCreator, "alice"), e.token(auth.RoleViewer, "bob")
	for _, c := range []struct{ path, token string }{
		{"/api/streams", creator}, {"/api/cart/items", viewer}, {"/api/checkout", viewer},
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
			"Idempotency-Key: k\r\nContent-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n", c.path, c.token)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(raw), `"payload_too_large"`) {
			t.Errorf("%s: got %d %s, want 413 payload_too_large at once (no 100 Continue)", c.path, resp.StatusCode, raw)
		}
	}
}

// TestCompressedBodyRefused: a JSON body with a content coding (gzip, br) is 415 naming
// the coding, not decoded as it is (a gzip body was 400 "not valid UTF-8"; a br-labelled
// plain one was taken); "identity" is no coding. The hold and checkout readers too.
func TestCompressedBodyRefused(t *testing.T) {
	e := newTestEnv(t)
	creator, viewer := e.token(auth.RoleCreator, "alice"), e.token(auth.RoleViewer, "bob")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"title":"zipped"}`))
	zw.Close()
	for _, c := range []struct {
		path, token, body, coding string
	}{
		{"/api/streams", creator, gz.String(), "gzip"},
		{"/api/streams", creator, `{"title":"plain"}`, "br"},
		{"/api/cart/items", viewer, `{"product_id":"0190f3a4-1b2c-7d3e-8f40-123456789abc","quantity":1}`, "gzip"},
		{"/api/checkout", viewer, `{}`, "deflate"},
	} {
		resp, raw := e.doHeaders("POST", c.path, c.token, c.body, "Content-Encoding", c.coding, "Idempotency-Key", "k")
		e.expect(resp, raw, http.StatusUnsupportedMediaType, "unsupported_media_type", nil)
		if !strings.Contains(string(raw), "Content-Encoding "+c.coding) {
			t.Errorf("%s %s: got %s, want the message to name the coding", c.path, c.coding, raw)
		}
	}
	resp, raw := e.doHeaders("POST", "/api/streams", creator, `{"title":"plain"}`, "Content-Encoding", "Identity")
	e.expect(resp, raw, http.StatusCreated, "", nil)
}
