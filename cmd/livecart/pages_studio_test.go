package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/livecart/livecart/web/pages/e2e"
)

// TestStudioSaleConflictSaysWhy: a sale the server refuses with 409 conflict shows the
// server's reason on the studio page. Every conflict read "Not enough stock for that
// many units." before, a sale on an ended stream too.
func TestStudioSaleConflictSaysWhy(t *testing.T) {
	f := newPagesFixture(t)
	var p struct{ ID string }
	f.srv.api("POST", "/api/streams/"+f.sid+"/products", f.creator, map[string]any{
		"sku": "CAP-1", "title": "Cap", "price_cents": 2000, "currency": "EUR", "stock": 5}, &p)
	studio := f.open(t, "studio", f.creator, 1280, 860)
	option := fmt.Sprintf(`document.querySelector('#s-product option[value=%s]')`, e2e.JSON(p.ID))
	studio.WaitFor("product in the sale form", option, 10*time.Second)
	out := `document.querySelector('#start-sale-out').textContent`
	startSale := func(units string) {
		t.Helper()
		e2e.MustEval[bool](studio, fmt.Sprintf(`(document.querySelector('#start-sale-out').textContent = '') === '' &&
			(document.querySelector('#s-product').value = %s) !== ''`, e2e.JSON(p.ID)))
		studio.SetValue("#s-price", "15.00")
		studio.SetValue("#s-units", units)
		studio.SetValue("#s-duration", "300")
		clickAt(t, studio, "#start-sale button[type=submit]")
		studio.WaitFor("an answer to the sale", out+` !== ''`, 5*time.Second)
	}

	startSale("8")
	if got, want := e2e.MustEval[string](studio, out), "product has 5 units in stock, the sale wants 8"; !containsFold(got, want) {
		t.Errorf("sale over stock: got %q, want it to say %q", got, want)
	}
	f.srv.api("POST", "/api/streams/"+f.sid+"/end", f.moderator, nil, nil)
	startSale("1")
	if got, want := e2e.MustEval[string](studio, out), "has ended"; !containsFold(got, want) {
		t.Errorf("sale on an ended stream: got %q, want it to say %q", got, want)
	}
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
