package main

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/web/pages/e2e"
)

// TestWatchPageSaleLimitShownBeforeTap: a flash sale allows two units a person. The
// buyer's Buy now stayed enabled whatever they held or had bought: at the limit, a tap
// was the only way to learn it (a hold refused with limit_exceeded), and the button
// came back enabled after that, to be refused again. Now the page counts the buyer's
// held and bought units of the sale (its cart and orders): a page opened at the limit
// shows it reached before any tap, and a purchase made elsewhere meanwhile, which the
// page could not count, is taken from the server's limit_exceeded: said, and the
// button then stays off.
func TestWatchPageSaleLimitShownBeforeTap(t *testing.T) {
	f := newPagesFixture(t)
	var p, sale struct{ ID string }
	f.srv.api("POST", "/api/streams/"+f.sid+"/products", f.creator, map[string]any{
		"sku": "TEE-1", "title": "Tee", "price_cents": 2500, "currency": "USD", "stock": 50}, &p)
	f.srv.api("POST", "/api/streams/"+f.sid+"/sales", f.creator, map[string]any{
		"product_id": p.ID, "price_cents": 1500, "quantity": 10, "per_user_limit": 2, "duration_s": 600}, &sale)
	tab, card := f.watchVia(t, f.srv.base, f.viewer1, sale.ID, 412, 915)
	btn := card + `.querySelector('.buy button')`
	outcome := card + `.querySelector('.outcome')`
	buySel := fmt.Sprintf(`#sales .sale[data-id=%s] .buy button`, e2e.JSON(sale.ID))

	// One unit through the page: one of two, Buy now still on.
	clickAt(t, tab, buySel)
	tab.WaitFor("the first order", `/Order #/.test(`+outcome+`.textContent)`, 5*time.Second)
	if _, err := tab.Poll(card+`.innerText.includes('you have 1')`, 3*time.Second); err != nil {
		t.Errorf("the card after one unit bought: got %q, want it to say the buyer has 1", e2e.MustEval[string](tab, card+`.innerText`))
	}
	if e2e.MustEval[bool](tab, btn+`.disabled`) {
		t.Fatalf("one unit of two bought: Buy now is disabled (%q)", e2e.MustEval[string](tab, card+`.innerText`))
	}

	// The second unit bought elsewhere (another device): this page cannot know it.
	f.srv.api("POST", "/api/cart/items", f.viewer1, map[string]any{"sale_id": sale.ID, "quantity": 1}, nil)
	if code, _ := checkoutWithKey(t, f.srv.base, f.viewer1, uuid.NewString()); code != 201 {
		t.Fatalf("the second unit's checkout through the API: got %d, want 201", code)
	}
	clickAt(t, tab, buySel)
	tab.WaitFor("an answer", outcome+`.dataset.code`, 5*time.Second)
	if code := e2e.MustEval[string](tab, outcome+`.dataset.code`); code != "limit_exceeded" {
		t.Fatalf("Buy now past the limit: got code %q, want limit_exceeded", code)
	}
	if got := e2e.MustEval[string](tab, outcome+`.textContent`); !containsFold(got, "limit reached") || !regexp.MustCompile(`\b2\b`).MatchString(got) {
		t.Errorf("the refusal for the limit: got %q, want it to say the limit of 2 is reached", got)
	}
	time.Sleep(time.Second) // the page's cart and orders read again
	if !e2e.MustEval[bool](tab, btn+`.disabled`) {
		t.Errorf("after limit_exceeded: Buy now enabled (%q), want it off", e2e.MustEval[string](tab, btn+`.textContent`))
	}

	// A page opened at the limit says so before any tap.
	tab2, card2 := f.watchVia(t, f.srv.base, f.viewer1, sale.ID, 1280, 860)
	reached := card2 + `.querySelector('.buy button').disabled && ` + card2 + `.querySelector('.buy button').textContent.includes('Limit reached')`
	if _, err := tab2.Poll(reached, 3*time.Second); err != nil {
		t.Errorf("a page opened with the limit reached: got %q (Buy now disabled: %v), want Buy now off reading Limit reached",
			e2e.MustEval[string](tab2, card2+`.innerText`), e2e.MustEval[bool](tab2, card2+`.querySelector('.buy button').disabled`))
	}
	if got := e2e.MustEval[string](tab2, card2+`.innerText`); !containsFold(got, "you have 2") {
		t.Errorf("the card at the limit: got %q, want it to say the buyer has 2", got)
	}
	// Another buyer is not limited by it.
	tab3, card3 := f.watchVia(t, f.srv.base, f.viewer2, sale.ID, 412, 915)
	time.Sleep(500 * time.Millisecond)
	if e2e.MustEval[bool](tab3, card3+`.querySelector('.buy button').disabled`) {
		t.Errorf("another buyer's Buy now is disabled: %q", e2e.MustEval[string](tab3, card3+`.innerText`))
	}
	for _, tb := range []*e2e.Tab{tab, tab2, tab3} {
		if issues := tb.Issues(); len(issues) > 0 {
			t.Errorf("page logged errors: %q", issues)
		}
	}
}
