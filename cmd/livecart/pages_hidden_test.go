package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/livecart/livecart/web/pages/e2e"
)

// TestWatchPageHidesSaleOfHiddenProduct: a moderator hides a product that has a flash
// sale running. The watch pages showed the sale's card on (its title, price and a Buy
// now that can only fail with not_found), and a page opened after the hide, whose
// product list lacks the product, fetched that list again every 2 s for as long as the
// sale ran (thousands of viewers: thousands of requests a second); a product list
// answered after the hide's event put the product back as it was. Now the card goes at
// once and stays gone, the page does not poll, and the card comes back when the product
// is shown.
func TestWatchPageHidesSaleOfHiddenProduct(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	f := newPagesFixture(t)
	var p, sale struct{ ID string }
	f.srv.api("POST", "/api/streams/"+f.sid+"/products", f.creator, map[string]any{
		"sku": "TEE-1", "title": "Regrettable tee", "price_cents": 2500, "currency": "USD", "stock": 50}, &p)
	f.srv.api("POST", "/api/streams/"+f.sid+"/sales", f.creator, map[string]any{
		"product_id": p.ID, "price_cents": 1500, "quantity": 10, "duration_s": 600}, &sale)
	card := fmt.Sprintf(`document.querySelector('#sales .card[data-id=%s]')`, e2e.JSON(sale.ID))

	// This page's product lists answer 1.5 s late: the one it asks for at load arrives
	// after the hide's event, with the product as it was before (it showed the card
	// again, for good).
	before := f.browser.NewTab(t, 1280, 860)
	before.AddInitScript(`(() => {
			const f = window.fetch;
			window.fetch = (...a) => String(a[0]).endsWith('/products')
				? f(...a).then((r) => new Promise((ok) => setTimeout(() => ok(r), 1500)))
				: f(...a);
		})()`)
	before.Navigate(fmt.Sprintf("%s/watch/%s?token=%s", f.srv.base, f.sid, f.viewer1))
	before.WaitFor("sale card", card, 10*time.Second)
	f.srv.api("PATCH", "/api/products/"+p.ID, f.moderator, map[string]bool{"hidden": true}, nil)
	gone := "!" + card + " && document.querySelector('#sales-panel').hidden"
	before.WaitFor("sale card gone after the hide", gone, 3*time.Second)
	time.Sleep(2 * time.Second) // the late product list has come
	if !e2e.MustEval[bool](before, gone) {
		t.Errorf("the sale card came back after the hide (a product list older than the hide): %s", e2e.MustEval[string](before, card+".innerText"))
	}

	// Its product lists counted from the start: its first two loads (one at load, one
	// for the snapshot's sale of a product it does not know, up to 2 s later: a timer,
	// which a loaded machine can fire late) must be answered before the quiet window
	// below starts, not assumed done 2.5 s after the page connected.
	after := f.browser.NewTab(t, 1280, 860)
	after.AddInitScript(`(() => {
			window.productLoads = 0;
			window.productLoadsOpen = 0;
			const f = window.fetch;
			window.fetch = (...a) => {
				if (!String(a[0]).endsWith('/products')) return f(...a);
				window.productLoads++;
				window.productLoadsOpen++;
				return f(...a).finally(() => { window.productLoadsOpen--; });
			};
		})()`)
	after.Navigate(fmt.Sprintf("%s/watch/%s?token=%s", f.srv.base, f.sid, f.viewer2))
	after.WaitFor("page connected", watchConnected, 10*time.Second)
	after.WaitFor("its first two product lists answered", `window.productLoads >= 2 && window.productLoadsOpen === 0`, 15*time.Second)
	first := e2e.MustEval[float64](after, "window.productLoads")
	time.Sleep(6500 * time.Millisecond) // the page re-renders its sales every 5 s
	if e2e.MustEval[bool](after, "!!"+card) {
		t.Errorf("a page opened after the hide shows the hidden product's sale: %s", e2e.MustEval[string](after, card+".innerText"))
	}
	if n := e2e.MustEval[float64](after, "window.productLoads") - first; n > 0 {
		t.Errorf("a page opened after the hide loaded the product list %v times in 6.5 s, want 0 (nothing changed)", n)
	}

	f.srv.api("PATCH", "/api/products/"+p.ID, f.moderator, map[string]bool{"hidden": false}, nil)
	for _, tab := range []*e2e.Tab{before, after} {
		tab.WaitFor("sale card back after the product is shown", card+" && "+card+".innerText.includes('Regrettable tee')", 3*time.Second)
	}
	for _, tab := range []*e2e.Tab{before, after} {
		if issues := tab.Issues(); len(issues) > 0 {
			t.Errorf("page logged errors: %q", issues)
		}
	}
}
