package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/pages/e2e"
)

// sentenceOrder checks, in Chromium's own layout, that the user text user inside the
// element sel is drawn as one piece in its place in the sentence: on each line the
// sentence's other letters run left to right, those before it end before its leftmost
// letter and those after it begin after its rightmost one. It returns what is wrong,
// or "". (An unclosed U+202E in a name put into a plain sentence drew the rest of the
// sentence backwards, right to left.)
func sentenceOrder(t *testing.T, tab *e2e.Tab, sel, user string) string {
	t.Helper()
	return e2e.MustEval[string](tab, fmt.Sprintf(`(() => {
		const el = document.querySelector(%s), user = %s;
		if (!el) return 'no element ' + %s;
		const full = el.textContent, at = full.indexOf(user);
		if (at < 0) return 'the text ' + JSON.stringify(full) + ' lacks ' + JSON.stringify(user);
		const nodes = [];
		const w = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
		for (let n, off = 0; (n = w.nextNode()); off += n.length) nodes.push([n, off]);
		const rect = (i) => {
			const [n, o] = nodes.findLast(([, o]) => o <= i);
			const r = document.createRange();
			r.setStart(n, i - o);
			r.setEnd(n, i - o + 1);
			return r.getBoundingClientRect();
		};
		const letters = [];
		for (let i = 0; i < full.length; i++) {
			if (/[\s\u2066-\u2069\u202a-\u202e]/.test(full[i])) continue;
			const r = rect(i);
			if (r.width === 0) continue;
			letters.push({ i, ch: full[i], line: Math.round(r.top), left: r.left, right: r.right, user: i >= at && i < at + user.length });
		}
		const own = letters.filter((l) => l.user);
		if (own.length === 0) return 'the user text is not drawn';
		const line = own[0].line;
		const minLeft = Math.min(...own.map((l) => l.left)), maxRight = Math.max(...own.map((l) => l.right));
		const problems = [];
		const others = letters.filter((l) => !l.user);
		for (let k = 1; k < others.length; k++) {
			const a = others[k - 1], b = others[k];
			if (a.line === b.line && b.left < a.left) problems.push(JSON.stringify(b.ch) + ' drawn left of ' + JSON.stringify(a.ch));
		}
		for (const l of others.filter((l) => l.line === line)) {
			if (l.i < at && l.right > minLeft + 0.5) problems.push(JSON.stringify(l.ch) + ' (before it) drawn right of its start');
			if (l.i >= at + user.length && l.left < maxRight - 0.5) problems.push(JSON.stringify(l.ch) + ' (after it) drawn left of its end');
		}
		return problems.length ? JSON.stringify(full) + ': ' + problems.slice(0, 4).join('; ') : '';
	})()`, e2e.JSON(sel), e2e.JSON(user), e2e.JSON(sel)))
}

// TestSentencesIsolateUserText: a name or a product title with an unclosed U+202E
// RIGHT-TO-LEFT OVERRIDE, put into a sentence of the pages, stays in its place and
// leaves the sentence's order alone. The moderation console's notices ("Muted Eve
// until 12:00:01." with the override after Eve drew " until 12:00:01." backwards), its
// Unmuted and Unpinned notices, the audit log's details (a product's sku), the pages'
// "who am I" line, the cart's rows and the studio's product rows put the text into the
// sentence as it was; each is now a <bdi>. An <option> and the document's title take
// no element: the text is between U+2068 and U+2069 there. A name over 64 characters
// in the page's own token is shown cut, as the server shows it.
func TestSentencesIsolateUserText(t *testing.T) {
	f := newPagesFixture(t)
	const eveName, title, sku = "Eve\u202e", "Cap\u202e", "CAP\u202e1"
	eve := f.srv.token(auth.RoleViewer, "viewer-3", eveName)
	moderator := f.srv.token(auth.RoleModerator, "mod-2", "Mia\u202e")
	var p struct{ ID string }
	f.srv.api("POST", "/api/streams/"+f.sid+"/products", f.creator, map[string]any{
		"sku": sku, "title": title, "price_cents": 2000, "currency": "EUR", "stock": 5}, &p)
	f.srv.api("POST", "/api/streams/"+f.sid+"/pins", f.creator, map[string]any{"product_id": p.ID}, nil)
	f.srv.api("POST", "/api/cart/items", eve, map[string]any{"product_id": p.ID, "quantity": 1}, nil)

	mod := f.open(t, "moderate", moderator, 1280, 860)
	w := f.open(t, "watch", eve, 1280, 860)
	studio := f.open(t, "studio", f.creator, 1280, 860)
	w.WaitFor("watch page connected", `document.querySelector('#conn').hidden && !document.querySelector('#chat form').hidden`, 10*time.Second)
	mod.WaitFor("console connected", `document.querySelector('#conn').hidden && document.querySelector('#chat ol')`, 10*time.Second)
	check := func(where string, tab *e2e.Tab, sel, user string) {
		t.Helper()
		if bad := sentenceOrder(t, tab, sel, user); bad != "" {
			t.Errorf("%s (%s): %s", where, sel, bad)
		}
	}

	// The watch page: who is signed in, and the cart's row.
	check("watch page, who", w, "#who", eveName)
	w.WaitFor("the held cap in the cart", `document.querySelector('#cart-body li') && document.querySelector('#cart-body li').textContent.includes(`+e2e.JSON(title)+`)`, 10*time.Second)
	check("watch page, cart row", w, "#cart-body li span", title)
	if got, want := e2e.MustEval[string](w, `document.title`), "\u2068Sneaker drop: live\u2069 · livecart"; got != want {
		t.Errorf("the document's title: got %q, want %q", got, want)
	}

	// The studio: the pinned product's row (its title before its "pinned" badge), the
	// sale form's option (Eve holds one of the 5 caps).
	studioRow := fmt.Sprintf(`#products tr[data-id=%s] td`, e2e.JSON(p.ID))
	studio.WaitFor("the pinned product's row", `document.querySelector('`+studioRow+` .badge')`, 10*time.Second)
	check("studio, product row", studio, studioRow, title)
	if got, want := e2e.MustEval[string](studio, fmt.Sprintf(`document.querySelector('#s-product option[value=%s]').textContent`, e2e.JSON(p.ID))), "\u2068"+title+"\u2069 (4 in stock)"; got != want {
		t.Errorf("the sale form's option: got %q, want %q", got, want)
	}

	// The moderation console: chat notices, the unmute and unpin notices, the audit log.
	check("console, who", mod, "#who", "Mia\u202e")
	say := func(text string) {
		t.Helper()
		w.SetValue("#chat-text", text)
		clickAt(t, w, "#chat form.row button[type=submit]")
		mod.WaitFor("the line "+text, fmt.Sprintf(`[...document.querySelectorAll('#chat li .text')].some((el) => el.textContent === %s)`, e2e.JSON(text)), 5*time.Second)
	}
	notice := `document.querySelector('#chat .notice').textContent`
	say("first line")
	clickAt(t, mod, `#chat li[data-user="viewer-3"] button.danger`)
	mod.WaitFor("delete notice", notice+`.startsWith('Deleted')`, 5*time.Second)
	check("console, delete notice", mod, "#chat .notice", eveName)
	say("second line")
	clickAt(t, mod, `#chat li[data-user="viewer-3"] button:not(.danger)`)
	mod.WaitFor("mute notice", notice+`.startsWith('Muted')`, 5*time.Second)
	check("console, mute notice", mod, "#chat .notice", eveName)
	mod.WaitFor("muted list", `document.querySelector('#mutes li[data-user="viewer-3"] button')`, 5*time.Second)
	clickAt(t, mod, `#mutes li[data-user="viewer-3"] button`)
	mod.WaitFor("unmute notice", `document.querySelector('#controls-out').textContent.startsWith('Unmuted')`, 5*time.Second)
	check("console, unmute notice", mod, "#controls-out", eveName)
	row := `#audit tr[data-action="product_create"] td.what .note`
	mod.WaitFor("the product in the audit log", `document.querySelector('`+row+`')`, 5*time.Second)
	check("console, audit details", mod, row, sku)
	mod.WaitFor("the pinned cap", `document.querySelector('#pins li button')`, 5*time.Second)
	clickAt(t, mod, `#pins li button`)
	mod.WaitFor("unpin notice", `document.querySelector('#controls-out').textContent.startsWith('Unpinned')`, 5*time.Second)
	check("console, unpin notice", mod, "#controls-out", title)

	// A page shows its own user's name as the server shows it: at most 64 characters.
	long := f.open(t, "watch", f.srv.token(auth.RoleViewer, "viewer-4", strings.Repeat("Eve the Great ", 1000)), 1280, 860)
	long.WaitFor("who", `document.querySelector('#who').textContent !== ''`, 10*time.Second)
	if got, want := e2e.MustEval[string](long, `document.querySelector('#who').textContent`), strings.Repeat("Eve the Great ", 4)+"Eve the… · viewer"; got != want {
		t.Errorf("a 70,000-character name in the page's own token: #who of %d characters %.80q…, want %q", utf8.RuneCountInString(got), got, want)
	}
	for _, tab := range []*e2e.Tab{mod, w, studio, long} {
		if issues := tab.Issues(); len(issues) > 0 {
			t.Errorf("page logged errors: %q", issues)
		}
	}
}
