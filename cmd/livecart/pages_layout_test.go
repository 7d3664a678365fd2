package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/livecart/livecart/web/pages/e2e"
)

// offScreen lists what makes the page wider than its window: the page's overflow, and
// each visible button, field or table cell that ends past the window's right edge.
const offScreen = `(() => {
	const W = document.documentElement.clientWidth;
	const out = [];
	if (document.documentElement.scrollWidth > W) out.push('page ' + document.documentElement.scrollWidth + ' px wide in a ' + W + ' px window');
	for (const el of document.querySelectorAll('button, input, select, td, th')) {
		if (el.offsetParent === null) continue;
		const r = el.getBoundingClientRect();
		if (r.right > W + 0.5) out.push(el.tagName.toLowerCase() + ' "' + (el.textContent || el.id).trim().slice(0, 30) + '" ends at ' + Math.round(r.right));
	}
	return out.slice(0, 8);
})()`

// TestConsolesFitNarrowScreens: the studio and the moderation console on a phone and a
// tablet. Their columns took the width of their widest table (the sales table, the
// audit log), so both pages were ~470 px wide on a 412 px phone and ~840 px on an
// 800 px tablet: the moderator's Hide and Stop buttons and the studio's controls lay
// off the right edge, reachable only by scrolling sideways. Now nothing is wider than
// the window; wide tables scroll inside their panel.
func TestConsolesFitNarrowScreens(t *testing.T) {
	f := newPagesFixture(t)
	var p, sale struct{ ID string }
	f.srv.api("POST", "/api/streams/"+f.sid+"/products", f.creator, map[string]any{
		"sku": "AUR-42", "title": "Aurora runner sneakers, limited colourway", "price_cents": 12900, "currency": "USD", "stock": 50}, &p)
	f.srv.api("POST", "/api/streams/"+f.sid+"/pins", f.creator, map[string]string{"product_id": p.ID}, nil)
	f.srv.api("POST", "/api/streams/"+f.sid+"/sales", f.creator, map[string]any{
		"product_id": p.ID, "price_cents": 7900, "quantity": 20, "duration_s": 600}, &sale)
	for _, size := range []struct{ w, h int64 }{{360, 740}, {412, 915}, {800, 1000}} {
		for _, page := range []struct{ name, token, ready string }{
			{"studio", f.creator, `document.querySelector('#sales tr[data-status="active"]')`},
			{"moderate", f.moderator, `document.querySelector('#sales tr[data-status="active"]') && document.querySelector('#audit tr[data-action="sale_create"]')`},
			{"watch", f.viewer1, `document.querySelector('#sales .sale') && document.querySelector('#pinned .card')`},
		} {
			t.Run(fmt.Sprintf("%s %dx%d", page.name, size.w, size.h), func(t *testing.T) {
				tab := f.open(t, page.name, page.token, size.w, size.h)
				tab.WaitFor(page.name+" filled", page.ready, 10*time.Second)
				if bad := e2e.MustEval[[]string](tab, offScreen); len(bad) > 0 {
					t.Errorf("got %q, want nothing past the window's right edge", bad)
				}
				tab.Close()
			})
		}
	}
}

// TestWatchBuyNowOnFirstScreen: on a phone the flash sale's Buy now is on the first
// screen, no scrolling: a tap to open the page (or to sign in), a tap to buy. On a
// 375×667 phone (and 360×640) the header took three rows and the video 58 % of the
// height, and the sale card began at the bottom edge, its Buy now below it.
func TestWatchBuyNowOnFirstScreen(t *testing.T) {
	f := newPagesFixture(t)
	var p, sale struct{ ID string }
	f.srv.api("POST", "/api/streams/"+f.sid+"/products", f.creator, map[string]any{
		"sku": "AUR-42", "title": "Aurora runner sneakers, limited colourway", "price_cents": 12900, "currency": "USD", "stock": 50}, &p)
	f.srv.api("POST", "/api/streams/"+f.sid+"/sales", f.creator, map[string]any{
		"product_id": p.ID, "price_cents": 7900, "quantity": 20, "per_user_limit": 2, "duration_s": 600}, &sale)
	for _, size := range []struct{ w, h int64 }{{360, 640}, {375, 667}, {412, 915}} {
		for _, who := range []struct{ name, token string }{{"viewer", f.viewer1}, {"anonymous", ""}} {
			t.Run(fmt.Sprintf("%s %dx%d", who.name, size.w, size.h), func(t *testing.T) {
				tab := f.open(t, "watch", who.token, size.w, size.h)
				btn := `document.querySelector('#sales .sale .buy button')`
				tab.WaitFor("sale card", btn+` && `+watchConnected, 10*time.Second)
				got := e2e.MustEval[[]float64](tab, `[`+btn+`.getBoundingClientRect().bottom, window.innerHeight, document.querySelector('#player').getBoundingClientRect().height]`)
				if got[0] > got[1] {
					t.Errorf("Buy now ends at %.0f px, below the first screen (%.0f px high; video %.0f px high)", got[0], got[1], got[2])
				}
				if got[2] < got[1]*0.4 {
					t.Errorf("video %.0f px high on a %.0f px screen, want at least 40 %%", got[2], got[1])
				}
				tab.Close()
			})
		}
	}
}

// TestWatchPageBuyButtonsNamed: each Buy now says, to a screen reader, what it buys and
// for how much. The flash sale's was only "Buy now", beside the pinned product's "Buy
// Cap now for $25.00": a keyboard or screen-reader user heard two "Buy now"s and could
// not tell which bought the sale's unit.
func TestWatchPageBuyButtonsNamed(t *testing.T) {
	f := newPagesFixture(t)
	var p, cap struct{ ID string }
	f.srv.api("POST", "/api/streams/"+f.sid+"/products", f.creator, map[string]any{
		"sku": "AUR-42", "title": "Aurora runner", "price_cents": 12900, "currency": "USD", "stock": 50}, &p)
	f.srv.api("POST", "/api/streams/"+f.sid+"/products", f.creator, map[string]any{
		"sku": "CAP-1", "title": "Cap", "price_cents": 2500, "currency": "USD", "stock": 50}, &cap)
	f.srv.api("POST", "/api/streams/"+f.sid+"/pins", f.creator, map[string]string{"product_id": cap.ID}, nil)
	f.srv.api("POST", "/api/streams/"+f.sid+"/sales", f.creator, map[string]any{
		"product_id": p.ID, "price_cents": 7900, "quantity": 20, "duration_s": 600}, nil)
	tab := f.open(t, "watch", f.viewer1, 1280, 860)
	tab.WaitFor("sale and pinned cards", `document.querySelector('#sales .sale .title').textContent === 'Aurora runner' && document.querySelector('#pinned .card')`, 10*time.Second)
	names := e2e.MustEval[[]string](tab, `[...document.querySelectorAll('.card .buy button.primary')].map((b) => b.getAttribute('aria-label') || b.textContent.trim())`)
	want := []string{"Buy Aurora runner now for $79.00", "Buy Cap now for $25.00"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("Buy now buttons' names: got %q, want %q", names, want)
	}
}
