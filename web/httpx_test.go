package web

import (
	"net/http"
	"net/http/httptest"
	"reflect"
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
