package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/livecart/livecart/web/pages"
)

// pagesServer serves the four pages and their static files with no API behind them
// and answers the base URL.
func pagesServer(t *testing.T) string {
	t.Helper()
	site, err := pages.New(pages.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", site.Page(pages.PageIndex))
	mux.Handle("GET /watch/{sid}", site.Page(pages.PageWatch))
	mux.Handle("GET /studio/{sid}", site.Page(pages.PageStudio))
	mux.Handle("GET /moderate/{sid}", site.Page(pages.PageModerate))
	mux.Handle("GET /static/", site.Static())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestPagesLoadUnderCSP loads every page with no API behind it: the scripts must load
// as modules under the CSP and fail gracefully (no exception, no CSP violation).
func TestPagesLoadUnderCSP(t *testing.T) {
	base := pagesServer(t)

	const sid = "0b4f3c9e-6a1d-4c1e-9c55-3f0d2f6b7a11"
	b := NewBrowser(t)
	tests := []struct {
		path  string
		ready string // JS expression true once the page has settled
	}{
		{"/", `document.querySelector('#state').textContent.includes('Could not load')`},
		{"/watch/" + sid, `document.querySelector('#title').textContent === 'Stream not found'`},
		{"/studio/" + sid, `!document.querySelector('#gate').hidden`},
		{"/moderate/" + sid, `!document.querySelector('#gate').hidden`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			tab := b.NewTab(t, 0, 0)
			tab.Navigate(base + tt.path)
			tab.WaitFor("page settled", tt.ready, 5*time.Second)
			time.Sleep(100 * time.Millisecond)
			if issues := tab.Issues(); len(issues) > 0 {
				t.Errorf("got page issues %q, want none", issues)
			}
		})
	}
}

// TestNewestOnly: of two overlapping loads, the older one answering last is dropped (the
// consoles' product, sale and audit lists once showed an older answer over a newer one).
func TestNewestOnly(t *testing.T) {
	base := pagesServer(t)

	tab := NewBrowser(t).NewTab(t, 0, 0)
	tab.Navigate(base + "/")
	got := MustEval[string](tab, `import('/static/js/util.js').then(async ({ newestOnly }) => {
		const later = (ms, v) => new Promise((resolve) => setTimeout(() => resolve(v), ms));
		const load = newestOnly(later);
		const older = load(80, 'older'), newer = load(10, 'newer');
		const [a, b] = [await newer, await older];
		const fail = newestOnly((ms) => later(ms).then(() => { throw new Error('boom'); }));
		const third = await load(1, 'third');
		let err = '';
		try { await fail(1); } catch (e) { err = e.message; }
		return [a, String(b), third, err].join(',');
	})`)
	if want := "newer,undefined,third,boom"; got != want {
		t.Errorf("got %q, want %q (the newer answer, the older dropped, a later call answered, errors passed)", got, want)
	}
}

// TestSidFromPathCanonical: a page opened at a stream id spelled in capitals (the API
// takes it as the same UUID) works with the lowercase id the API answers with: the
// watch page's cart compares its holds' stream_id with it, and showed an empty cart.
func TestSidFromPathCanonical(t *testing.T) {
	base := pagesServer(t)

	const sid = "0b4f3c9e-6a1d-4c1e-9c55-3f0d2f6b7a11"
	tab := NewBrowser(t).NewTab(t, 0, 0)
	tab.Navigate(base + "/watch/" + strings.ToUpper(sid))
	got := MustEval[string](tab, `import('/static/js/util.js').then(({ sidFromPath }) => sidFromPath())`)
	if got != sid {
		t.Errorf("sidFromPath on /watch/%s: got %q, want %q", strings.ToUpper(sid), got, sid)
	}
}

// TestShortIDs: ids shown in eight digits (order numbers, the audit log's targets) tell
// apart ids made in the same millisecond: livecart's ids are UUIDv7, whose first digits
// are the time, and the audit log showed three different targets as the same 01a234ba.
func TestShortIDs(t *testing.T) {
	base := pagesServer(t)

	tab := NewBrowser(t).NewTab(t, 0, 0)
	tab.Navigate(base + "/")
	got := MustEval[string](tab, `import('/static/js/util.js').then(({ shortId, shortTarget }) => [
		shortId('01a234ba-fd28-7948-845b-3fb8d383b862'),
		shortId('01a234ba-fc7c-76cb-be63-a1ed1c263abc'),
		shortTarget('01A234BA-FC7C-76CB-BE63-A1ED1C263ABC'),
		shortTarget('viewer-9708c4fa'),
		shortTarget('a-very-long-user-id-from-the-shop'),
	].join(','))`)
	if want := "D383B862,1C263ABC,1C263ABC,viewer-9708c4fa,a-very-long-use…"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
