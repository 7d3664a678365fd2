package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/livecart/livecart/web/pages/e2e"
)

// watchVia opens the watch page of f's stream through base (the server or a proxy) and
// waits until its live channel is open and the card of the given sale shows.
func (f *pagesFixture) watchVia(t *testing.T, base, token, saleID string, w, h int64) (*e2e.Tab, string) {
	t.Helper()
	tab := f.openAt(t, base, "watch", token, w, h)
	card := fmt.Sprintf(`document.querySelector('#sales .sale[data-id=%s]')`, e2e.JSON(saleID))
	tab.WaitFor("sale card on a connected page", card+` && document.querySelector('#conn').hidden`, 10*time.Second)
	return tab, card
}

// TestWatchPageSaleOverWhileDisconnected: a flash sale ends while the watch page has
// lost the server. The page showed the sale on as it was ("Ends in 0:00", "10 of 10
// left", Buy now enabled) for as long as the connection stayed down, a sale that can
// no longer be bought. At its end time it now reads over and cannot be tapped.
func TestWatchPageSaleOverWhileDisconnected(t *testing.T) {
	f := newPagesFixture(t)
	var p, sale struct {
		ID     string
		EndsAt time.Time `json:"ends_at"`
	}
	f.srv.api("POST", "/api/streams/"+f.sid+"/products", f.creator, map[string]any{
		"sku": "TEE-1", "title": "Tee", "price_cents": 2500, "currency": "USD", "stock": 50}, &p)
	f.srv.api("POST", "/api/streams/"+f.sid+"/sales", f.creator, map[string]any{
		"product_id": p.ID, "price_cents": 1500, "quantity": 10, "duration_s": 4}, &sale)
	proxy := startCutProxy(t, f.srv.main.Addr())
	tab, card := f.watchVia(t, "http://"+proxy.addr(), f.viewer1, sale.ID, 412, 915)
	if e2e.MustEval[bool](tab, card+`.querySelector('.buy button').disabled`) {
		t.Fatal("the running sale's Buy now is disabled before the cut")
	}

	proxy.cut()
	tab.WaitFor("reconnecting banner", `!document.querySelector('#conn').hidden`, 5*time.Second)
	time.Sleep(time.Until(sale.EndsAt) + 500*time.Millisecond)
	over := card + `.querySelector('.buy button').disabled && ` + card + `.querySelector('.stock').textContent.includes('over')`
	if _, err := tab.Poll(over, time.Second); err != nil {
		t.Errorf("a sale past its end while the page is disconnected: got %q (Buy now disabled: %v), want it over and Buy now disabled",
			e2e.MustEval[string](tab, card+`.innerText`), e2e.MustEval[bool](tab, card+`.querySelector('.buy button').disabled`))
	}
	if issues := tab.Issues(); len(issues) > 0 {
		t.Errorf("page logged errors: %q", issues)
	}
}
