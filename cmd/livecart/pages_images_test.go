package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/pages/e2e"
)

// TestPagesShowOnlyWebImages: a product's image_url reaches an <img src> of the watch
// and moderate pages only as an https URL (an http one upgraded, as a browser upgrades
// an image on a secure page: the pages' Content-Security-Policy loads images over
// https only). The server keeps a relative image_url and now refuses one of another
// scheme (TestCommerceBadInput), but a product stored before it did may hold a
// javascript: or data: URL, which the pages put into src as they were: such a product,
// like one with a relative image_url, shows its title's initial, as one without an image
// does.
func TestPagesShowOnlyWebImages(t *testing.T) {
	f := newPagesFixture(t)
	cases := []struct{ url, want, id string }{
		{url: "https://127.0.0.1:1/a.png", want: "https://127.0.0.1:1/a.png"},
		{url: "http://127.0.0.1:1/b.png", want: "https://127.0.0.1:1/b.png"},
		{url: "javascript:alert(1)"},
		{url: "data:image/gif;base64,R0lGODlhAQABAAAAACw="},
		{url: "/c.png"},
	}
	for i := range cases {
		// Straight into the store, as a product created before the server checked.
		p, err := f.srv.main.store.CreateProduct(context.Background(), cart.Product{ID: uuid.NewString(), StreamID: f.sid,
			SKU: "S", Title: "Cap", PriceCents: 100, Currency: "USD", ImageURL: cases[i].url, Stock: 5}, 0)
		if err != nil {
			t.Fatal(err)
		}
		cases[i].id = p.ID
		f.srv.api("POST", "/api/streams/"+f.sid+"/pins", f.creator, map[string]string{"product_id": p.ID}, nil)
	}
	for _, page := range []struct{ name, token, card string }{
		{"watch", f.viewer1, "#pinned .card[data-id=%s]"},
		{"moderate", f.moderator, "#pins .card[data-id=%s]"},
	} {
		tab := f.open(t, page.name, page.token, 1280, 860)
		for _, tc := range cases {
			card := fmt.Sprintf(`document.querySelector(%s)`, e2e.JSON(fmt.Sprintf(page.card, e2e.JSON(tc.id))))
			tab.WaitFor(page.name+" page's card", card, 10*time.Second)
			got := e2e.MustEval[string](tab, `(() => { const i = `+card+`.querySelector('img'); return i ? i.getAttribute('src') : ''; })()`)
			initial := e2e.MustEval[string](tab, `(() => { const n = `+card+`.querySelector('.noimg'); return n ? n.textContent : ''; })()`)
			switch {
			case got != tc.want:
				t.Errorf("%s page: image_url %q shown as src %q, want %q", page.name, tc.url, got, tc.want)
			case tc.want == "" && initial != "C":
				t.Errorf("%s page: image_url %q: the card shows %q in place of the image, want the title's initial", page.name, tc.url, initial)
			}
		}
	}
}
