package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"testing"
	"time"

	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/pages/e2e"
)

// pagesServer is the real server, wired by NewMain exactly as the binary wires it,
// listening on loopback with a temp data dir.
type pagesServer struct {
	t    *testing.T
	main *Main
	base string
}

func startPagesServer(t *testing.T) *pagesServer {
	t.Helper()
	m := startMain(t, "pages server", pagesConfig(t))
	return &pagesServer{t: t, main: m, base: "http://" + m.Addr()}
}

// pagesConfig is the pages server's config: testConfig with a fixed secret (tokens
// stay valid across a restart) and guest tokens on.
func pagesConfig(t *testing.T) Config {
	cfg := testConfig(t)
	cfg.Auth.Secret = "pages-e2e-secret-0123456789abcdef"
	cfg.GuestTokens = true
	return cfg
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func (s *pagesServer) token(role auth.Role, user, name string) string {
	s.t.Helper()
	tok, err := s.main.auth.Mint(auth.Identity{UserID: user, Name: name, Role: role}, time.Hour)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// api calls the JSON API and decodes a 2xx answer into out.
func (s *pagesServer) api(method, path, token string, body, out any) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		s.t.Fatalf("%s %s: got %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			s.t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
}

// pagesFixture is one stream with a creator, a moderator and two viewers, each with a
// page open.
type pagesFixture struct {
	srv                 *pagesServer
	sid                 string
	studio, mod, w1, w2 *e2e.Tab
	creator, moderator  string
	viewer1, viewer2    string
	browser             *e2e.Browser
}

func newPagesFixture(t *testing.T) *pagesFixture {
	return newPagesFixtureOn(t, startPagesServer(t))
}

// newPagesFixtureOn is newPagesFixture on a server the test started.
func newPagesFixtureOn(t *testing.T, srv *pagesServer) *pagesFixture {
	f := &pagesFixture{
		srv:       srv,
		creator:   srv.token(auth.RoleCreator, "creator-1", "Cleo Creator"),
		moderator: srv.token(auth.RoleModerator, "mod-1", "Max Moderator"),
		viewer1:   srv.token(auth.RoleViewer, "viewer-1", "Vera"),
		viewer2:   srv.token(auth.RoleViewer, "viewer-2", "Victor"),
	}
	var st struct {
		ID string `json:"id"`
	}
	srv.api("POST", "/api/streams", f.creator, map[string]string{"title": "Sneaker drop: live"}, &st)
	f.sid = st.ID
	f.browser = e2e.NewBrowser(t)
	return f
}

// watchConnected holds once a watch page's live channel has applied its first snapshot.
// #conn is hidden while the page first connects too, and #status is filled by its REST
// read of the stream, so those two alone can hold before the websocket has even opened:
// a page taken offline then had no seq to resume from (TestWatchPageOfflineMarksStale
// failed so on the loaded 2-core PVM guest). A snapshot's viewers count its own
// connection; "0 watching" is only the page's text before one.
const watchConnected = `document.querySelector('#conn').hidden && document.querySelector('#status').textContent !== '…' && ` +
	`document.querySelector('#viewers').textContent !== '0 watching'`

func (f *pagesFixture) open(t *testing.T, page, token string, w, h int64) *e2e.Tab {
	return f.openAt(t, f.srv.base, page, token, w, h)
}

// openAt opens a page from base (the server, or a proxy in front of it).
func (f *pagesFixture) openAt(t *testing.T, base, page, token string, w, h int64) *e2e.Tab {
	tab := f.browser.NewTab(t, w, h)
	url := fmt.Sprintf("%s/%s/%s", base, page, f.sid)
	if token != "" {
		url += "?token=" + token
	}
	tab.Navigate(url)
	return tab
}

// clickAt clicks a button from inside the page and returns the page's Date.now() at
// the click (the tabs share one clock: same machine).
func clickAt(t *testing.T, tab *e2e.Tab, sel string) float64 {
	t.Helper()
	return e2e.MustEval[float64](tab, fmt.Sprintf(`(() => {
		const el = document.querySelector(%s);
		if (!el) throw new Error('no element ' + %s);
		const t = Date.now();
		el.click();
		return t;
	})()`, e2e.JSON(sel), e2e.JSON(sel)))
}

// markWhen installs, in the page, a watcher that records Date.now() in window[name] the
// first time cond becomes true (checked on every DOM change and every 5 ms).
func markWhen(t *testing.T, tab *e2e.Tab, name, cond string) {
	t.Helper()
	e2e.MustEval[bool](tab, fmt.Sprintf(`(() => {
		window[%[1]s] = 0;
		const check = () => {
			if (window[%[1]s]) return;
			let ok = false;
			try { ok = !!(%[2]s); } catch (e) { ok = false; }
			if (ok) { window[%[1]s] = Date.now(); obs.disconnect(); clearInterval(iv); }
		};
		const obs = new MutationObserver(check);
		obs.observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
		const iv = setInterval(check, 5);
		return true;
	})()`, e2e.JSON(name), cond))
}

// markFirstFrame records in window.firstFrameAt the time the next video frame is
// presented on the watch page.
func markFirstFrame(t *testing.T, tab *e2e.Tab) {
	t.Helper()
	e2e.MustEval[bool](tab, `(() => {
		window.firstFrameAt = 0;
		const v = document.querySelector('#video');
		v.requestVideoFrameCallback(() => { window.firstFrameAt = Date.now(); });
		return true;
	})()`)
}

func waitMark(t *testing.T, tab *e2e.Tab, name string, timeout time.Duration) float64 {
	t.Helper()
	tab.WaitFor(name, fmt.Sprintf("window[%s] > 0", e2e.JSON(name)), timeout)
	return e2e.MustEval[float64](tab, fmt.Sprintf("window[%s]", e2e.JSON(name)))
}

// a11yProblems lists visible form controls without an accessible name and duplicate ids.
const a11yProblems = `(() => {
	const out = [];
	for (const el of document.querySelectorAll('input, select, textarea, button')) {
		if (el.offsetParent === null || el.type === 'hidden') continue;
		const named = el.tagName === 'BUTTON'
			? (el.textContent.trim() !== '' || el.hasAttribute('aria-label'))
			: ((el.labels && el.labels.length > 0) || el.hasAttribute('aria-label'));
		if (!named) out.push('unnamed ' + el.outerHTML.slice(0, 80));
	}
	const seen = new Set();
	for (const el of document.querySelectorAll('[id]')) {
		if (seen.has(el.id)) out.push('duplicate id ' + el.id);
		seen.add(el.id);
	}
	return out;
})()`

const videoMoving = `(async () => {
	const v = document.querySelector('#video');
	if (!v || v.videoWidth === 0) return false;
	const t0 = v.currentTime;
	await new Promise((r) => setTimeout(r, 700));
	return v.videoWidth > 0 && v.currentTime > t0;
})()`

func (f *pagesFixture) goLive(t *testing.T) float64 {
	t.Helper()
	f.studio.WaitFor("camera preview", `document.querySelector('#preview').videoWidth > 0`, 15*time.Second)
	return clickAt(t, f.studio, "#golive")
}

func (f *pagesFixture) addProduct(t *testing.T, title, sku, price string, stock int) string {
	t.Helper()
	tab := f.studio
	e2e.MustEval[bool](tab, `(document.querySelector('#add-product-box').open = true)`)
	tab.SetValue("#p-title", title)
	tab.SetValue("#p-sku", sku)
	tab.SetValue("#p-price", price)
	tab.SetValue("#p-stock", fmt.Sprint(stock))
	clickAt(t, tab, "#add-product button[type=submit]")
	cond := fmt.Sprintf(`[...document.querySelectorAll('#products tr')].find((tr) => tr.textContent.includes(%s))`, e2e.JSON(title))
	tab.WaitFor("product row "+title, cond, 5*time.Second)
	return e2e.MustEval[string](tab, cond+".dataset.id")
}

// TestPagesEndToEnd drives the whole show in Chromium: the studio goes live, the
// watch page plays moving video, a pin appears within 1 s, a flash sale sells out
// through Buy now with every page following the stock, and the moderator's unpin
// takes the card off the watch page.
func TestPagesEndToEnd(t *testing.T) {
	f := newPagesFixture(t)
	shots := os.Getenv("LIVECART_SCREENSHOTS") // directory for docs screenshots, if set

	// A visitor without a token picks a name (guest_tokens is on) and chats.
	guest := f.open(t, "watch", "", 800, 800)
	guest.WaitFor("guest name form", `document.querySelector('#guest-chat')`, 10*time.Second)
	guest.SetValue("#guest-chat", "Gina")
	clickAt(t, guest, "#chat form:has(#guest-chat) button[type=submit]")
	guest.WaitFor("chat form after joining", `!document.querySelector('#chat form.row').hidden && document.querySelector('#who').textContent.startsWith('Gina')`, 5*time.Second)
	guest.WaitFor("chat connected as Gina", `document.querySelector('#conn').hidden`, 10*time.Second)
	guest.SetValue("#chat-text", "hi from Gina")
	clickAt(t, guest, "#chat form.row button[type=submit]")
	guest.WaitFor("own chat line", `[...document.querySelectorAll('#chat li')].some((li) => li.textContent.includes('Gina') && li.textContent.includes('hi from Gina'))`, 5*time.Second)
	if issues := guest.Issues(); len(issues) > 0 {
		t.Errorf("guest page logged errors: %q", issues)
	}
	guest.Close()

	// Viewer 2 reaches the server through a proxy the test can cut.
	proxy := startCutProxy(t, f.srv.main.Addr())

	f.w1 = f.open(t, "watch", f.viewer1, 1280, 860)
	f.w1.WaitFor("watch page connected", watchConnected, 10*time.Second)
	f.studio = f.open(t, "studio", f.creator, 1440, 1000)
	f.studio.WaitFor("OBS settings", fmt.Sprintf(`document.querySelector('#whip-url').value.endsWith('/whip/' + %s) && document.querySelector('#stream-key').value.length > 8`, e2e.JSON(f.sid)), 5*time.Second)
	f.mod = f.open(t, "moderate", f.moderator, 1440, 1000)
	f.w2 = f.openAt(t, "http://"+proxy.addr(), "watch", f.viewer2, 412, 915)

	// Go live: the watch page (subscribed before the publisher came) plays moving video.
	markFirstFrame(t, f.w1)
	t0 := f.goLive(t)
	f.studio.WaitFor("studio live", `document.querySelector('#live-state').dataset.state === 'live'`, 15*time.Second)
	first := waitMark(t, f.w1, "firstFrameAt", 15*time.Second)
	t.Logf("Go live click → first frame on the watch page: %.0f ms", first-t0)
	f.w1.WaitFor("moving video", videoMoving, 10*time.Second)
	f.w2.WaitFor("moving video on the phone page", videoMoving, 15*time.Second)
	f.w1.WaitFor("LIVE badge", `document.querySelector('#status').textContent === 'LIVE'`, 5*time.Second)

	// The front page lists the stream as live.
	home := f.browser.NewTab(t, 1024, 700)
	home.Navigate(f.srv.base + "/")
	home.WaitFor("live stream on the front page", fmt.Sprintf(`document.querySelector('#streams li[data-id=%s] .badge.live')`, e2e.JSON(f.sid)), 10*time.Second)
	home.Close()

	// Pin: the card is on the watch page within 1 s (the median of three pins, so that
	// one stall of a shared CI machine does not decide).
	pid := f.addProduct(t, "Aurora runner", "AUR-42", "129.00", 20)
	pinned := fmt.Sprintf(`document.querySelector('#pinned .card[data-id=%s]')`, e2e.JSON(pid))
	pinButton := fmt.Sprintf(`#products tr[data-id=%s] button[aria-pressed]`, e2e.JSON(pid))
	var pinMs []float64
	for i := 0; i < 3; i++ {
		if i > 0 {
			clickAt(t, f.studio, pinButton) // unpin
			f.w1.WaitFor("card gone before pinning again", "!"+pinned, 5*time.Second)
			f.studio.WaitFor("studio shows unpinned", fmt.Sprintf(`document.querySelector(%s).getAttribute('aria-pressed') === 'false'`, e2e.JSON(pinButton)), 5*time.Second)
		}
		markWhen(t, f.w1, "pinAt", pinned)
		tPin := clickAt(t, f.studio, pinButton)
		pinMs = append(pinMs, waitMark(t, f.w1, "pinAt", 5*time.Second)-tPin)
		f.studio.WaitFor("studio shows pinned", fmt.Sprintf(`document.querySelector(%s).getAttribute('aria-pressed') === 'true'`, e2e.JSON(pinButton)), 5*time.Second)
	}
	if m := median(pinMs); m > 1000 {
		t.Errorf("pin click → card on the watch page: got %v ms (median %.0f), want a median ≤ 1000 ms", rounded(pinMs), m)
	} else {
		t.Logf("pin click → card on the watch page: %v ms, median %.0f", rounded(pinMs), m)
	}
	f.w2.WaitFor("card on the phone page", pinned, 2*time.Second)

	// Flash sale of 2 units, 1 per person.
	e2e.MustEval[bool](f.studio, fmt.Sprintf(`(document.querySelector('#s-product').value = %s) !== ''`, e2e.JSON(pid)))
	f.studio.SetValue("#s-price", "79.00")
	f.studio.SetValue("#s-units", "2")
	f.studio.SetValue("#s-cap", "1")
	f.studio.SetValue("#s-duration", "300")
	clickAt(t, f.studio, "#start-sale button[type=submit]")
	saleCard := `document.querySelector('#sales .sale')`
	for name, tab := range map[string]*e2e.Tab{"watch": f.w1, "phone": f.w2} {
		tab.WaitFor("sale card on "+name, saleCard+` && `+saleCard+`.dataset.remaining === '2'`, 3*time.Second)
	}

	// Viewer 1 buys: stock drops to 1 on every open page.
	clickAt(t, f.w1, "#sales .sale .buy button")
	f.w1.WaitFor("order placed", `/Order #[0-9A-F]{8}/.test(document.querySelector('#sales .sale .outcome').textContent)`, 5*time.Second)
	remainingIs := func(n int) map[string]string {
		return map[string]string{
			"watch":    fmt.Sprintf(`%s.dataset.remaining === '%d'`, saleCard, n),
			"phone":    fmt.Sprintf(`%s.dataset.remaining === '%d'`, saleCard, n),
			"studio":   fmt.Sprintf(`document.querySelector('#sales tr[data-remaining="%d"]')`, n),
			"moderate": fmt.Sprintf(`document.querySelector('#sales tr[data-remaining="%d"]')`, n),
		}
	}
	tabs := map[string]*e2e.Tab{"watch": f.w1, "phone": f.w2, "studio": f.studio, "moderate": f.mod}
	for _, name := range sortedKeys(tabs) {
		tabs[name].WaitFor("stock 1 on "+name, remainingIs(1)[name], 3*time.Second)
	}
	f.w1.WaitFor("only 1 left", saleCard+`.querySelector('.stock').textContent.includes('Only 1 left')`, 2*time.Second)
	f.studio.WaitFor("studio figures: 1 sold", `document.querySelector('#f-sold').textContent === '1'`, 5*time.Second)

	// A chat line, seen by the moderator.
	f.w1.SetValue("#chat-text", "Love these!")
	clickAt(t, f.w1, "#chat form button[type=submit]")
	f.mod.WaitFor("chat on the moderation page", `[...document.querySelectorAll('#chat li')].some((li) => li.textContent.includes('Love these!'))`, 3*time.Second)

	// Every visible control has a name (label, text or aria-label) and ids are unique.
	for _, name := range sortedKeys(tabs) {
		bad := e2e.MustEval[[]string](tabs[name], a11yProblems)
		if len(bad) > 0 {
			t.Errorf("%s page: got accessibility problems %q, want none", name, bad)
		}
	}

	if shots != "" {
		f.mod.WaitFor("audit entries", `document.querySelectorAll('#audit tr').length >= 3`, 5*time.Second)
		e2e.MustEval[bool](f.studio, `!(document.querySelector('#add-product-box').open = false)`)
		f.w1.Screenshot(filepath.Join(shots, "screenshot-watch.png"))
		f.w2.Screenshot(filepath.Join(shots, "screenshot-watch-phone.png"))
		f.studio.Screenshot(filepath.Join(shots, "screenshot-studio.png"))
		f.mod.Screenshot(filepath.Join(shots, "screenshot-moderate.png"))
	}

	// Viewer 2 buys the last unit: sold out everywhere; viewer 1 is told why not.
	clickAt(t, f.w2, "#sales .sale .buy button")
	f.w2.WaitFor("second order", `/Order #/.test(document.querySelector('#sales .sale .outcome').textContent)`, 5*time.Second)
	for _, name := range sortedKeys(tabs) {
		tabs[name].WaitFor("stock 0 on "+name, remainingIs(0)[name], 3*time.Second)
	}
	for _, tab := range []*e2e.Tab{f.w1, f.w2} {
		tab.WaitFor("sold out shown", saleCard+`.querySelector('.stock').textContent === 'Sold out' && `+saleCard+`.querySelector('.buy button').disabled`, 2*time.Second)
		// At 0 left the stock bar is empty: no sliver of its fill shows.
		tab.WaitFor("empty stock bar", saleCard+`.querySelector('.stockbar > span').getBoundingClientRect().width === 0`, 2*time.Second)
	}

	// Viewer 2 loses the server: the page says its numbers may be stale.
	proxy.cut()
	f.w2.WaitFor("reconnecting banner", `!document.querySelector('#conn').hidden && document.querySelector('#main').classList.contains('stale')`, 5*time.Second)

	// Meanwhile the moderator unpins: the card leaves the watch page.
	markWhen(t, f.w1, "unpinAt", `!`+pinned)
	tUnpin := clickAt(t, f.mod, fmt.Sprintf(`#pins li[data-id=%s] button`, e2e.JSON(pid)))
	gone := waitMark(t, f.w1, "unpinAt", 3*time.Second)
	t.Logf("moderator unpin → card gone from the watch page: %.0f ms", gone-tUnpin)
	f.mod.WaitFor("unpin in the audit log", `document.querySelector('#audit tr[data-action="unpin"]')`, 3*time.Second)
	if still, _ := e2e.Eval[bool](f.w2, `!!`+pinned); !still {
		t.Errorf("the cut-off page dropped the card without hearing the unpin")
	}

	// The server comes back: viewer 2 resumes from its last seq and catches up.
	proxy.restore()
	f.w2.WaitFor("caught up after reconnecting", `document.querySelector('#conn').hidden && !document.querySelector('#main').classList.contains('stale') && !`+pinned, 20*time.Second)
	ws := proxy.requestLines("/ws/")
	if len(ws) < 2 || !regexp.MustCompile(`[?&]since=[1-9][0-9]*`).MatchString(ws[len(ws)-1]) {
		t.Errorf("got websocket requests %q, want the last one to resume with since=<seq>", ws)
	}

	// Cart with a hold timer: add the product, see the timer, check out.
	markWhen(t, f.w1, "cardBack", pinned)
	clickAt(t, f.studio, fmt.Sprintf(`#products tr[data-id=%s] button[aria-pressed]`, e2e.JSON(pid)))
	waitMark(t, f.w1, "cardBack", 3*time.Second)
	clickAt(t, f.w1, fmt.Sprintf(`#pinned .card[data-id=%s] .buy button:nth-child(2)`, e2e.JSON(pid)))
	f.w1.WaitFor("hold timer in the cart", `/held [0-9]+:[0-5][0-9]/.test(document.querySelector('#cart-body .timer').textContent)`, 5*time.Second)
	clickAt(t, f.w1, "#cart-body .actions button")
	f.w1.WaitFor("cart checked out", `/Done! Order #[0-9A-F]{8}/.test(document.querySelector('#cart-body .outcome').textContent) && !document.querySelector('#cart-body .timer')`, 5*time.Second)
	f.studio.WaitFor("product sale in the figures", `document.querySelector('#f-sold').textContent === '3'`, 5*time.Second)

	// The moderator hides the pinned product: it leaves the watch page; then shows it.
	f.mod.WaitFor("pinned card on the moderation page", fmt.Sprintf(`document.querySelector('#pins li[data-id=%s]')`, e2e.JSON(pid)), 3*time.Second)
	clickAt(t, f.mod, fmt.Sprintf(`#pins li[data-id=%s] button.danger`, e2e.JSON(pid)))
	f.w1.WaitFor("hidden product gone from the watch page", "!"+pinned, 3*time.Second)
	f.mod.WaitFor("hidden badge", fmt.Sprintf(`document.querySelector('#products tr[data-id=%s] .badge.warn')`, e2e.JSON(pid)), 3*time.Second)
	clickAt(t, f.mod, fmt.Sprintf(`#products tr[data-id=%s] button`, e2e.JSON(pid)))
	f.mod.WaitFor("shown again", fmt.Sprintf(`!document.querySelector('#products tr[data-id=%s] .badge.warn')`, e2e.JSON(pid)), 3*time.Second)

	// The moderator stops the (sold-out) sale: every page shows it over.
	clickAt(t, f.mod, "#sales tr button.danger")
	f.studio.WaitFor("sale ended in the studio", `document.querySelector('#sales tr[data-status="ended"]')`, 3*time.Second)
	f.w1.WaitFor("sale over on the watch page", saleCard+` && `+saleCard+`.dataset.status === 'ended' && `+saleCard+`.querySelector('.stock').textContent.includes('Sold out')`, 3*time.Second)

	// Moderation of chat: delete a line, mute its author.
	f.mod.WaitFor("chat line to moderate", `document.querySelector('#chat li[data-user="viewer-1"]')`, 3*time.Second)
	clickAt(t, f.mod, `#chat li[data-user="viewer-1"] button.danger`)
	f.w1.WaitFor("deleted line gone", `![...document.querySelectorAll('#chat li')].some((li) => li.textContent.includes('Love these!'))`, 3*time.Second)
	f.w1.SetValue("#chat-text", "one more")
	clickAt(t, f.w1, "#chat form.row button[type=submit]")
	f.mod.WaitFor("second line", `document.querySelector('#chat li[data-user="viewer-1"]')`, 3*time.Second)
	e2e.MustEval[bool](f.mod, `(document.querySelector('#chat-mute-for').value = '10') !== ''`)
	clickAt(t, f.mod, `#chat li[data-user="viewer-1"] button:not(.danger)`)
	f.w1.WaitFor("muted notice", `document.querySelector('#chat .notice').textContent.includes('muted you until')`, 3*time.Second)
	f.mod.WaitFor("muted list", `document.querySelector('#mutes li[data-user="viewer-1"]')`, 3*time.Second)
	clickAt(t, f.mod, `#mutes li[data-user="viewer-1"] button`)
	f.mod.WaitFor("unmuted", `!document.querySelector('#mutes li[data-user="viewer-1"]') && document.querySelector('#audit tr[data-action="unmute"]')`, 3*time.Second)

	// Media mute per kind: viewers see the video paused, then back.
	clickAt(t, f.mod, "#mute-video")
	f.w1.WaitFor("video paused notice", `!document.querySelector('#overlay').hidden && document.querySelector('#overlay').textContent.includes('paused')`, 3*time.Second)
	f.mod.WaitFor("mute button pressed", `document.querySelector('#mute-video').getAttribute('aria-pressed') === 'true'`, 3*time.Second)
	clickAt(t, f.mod, "#mute-video")
	f.w1.WaitFor("video back", `document.querySelector('#overlay').hidden`, 10*time.Second)
	f.w1.WaitFor("moving video again", videoMoving, 10*time.Second)

	// The moderator ends the stream (two clicks): every page says so.
	clickAt(t, f.mod, "#end")
	clickAt(t, f.mod, "#end")
	f.w1.WaitFor("ended on the watch page", `document.querySelector('#status').textContent === 'Ended' && document.querySelector('#overlay').textContent.includes('ended')`, 5*time.Second)
	f.studio.WaitFor("ended in the studio", `document.querySelector('#status').textContent === 'Ended' && document.querySelector('#golive').disabled`, 5*time.Second)
	f.mod.WaitFor("stream_end in the audit log", `document.querySelector('#audit tr[data-action="stream_end"]')`, 5*time.Second)

	for name, tab := range tabs {
		if issues := tab.Issues(); len(issues) > 0 {
			t.Errorf("%s page logged errors: %q", name, issues)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestPagesLatency measures, with LIVECART_PAGES_BENCH=1, the two figures of
// docs/BENCHMARKS.md "Pages": Go live click → first frame on the watch page, and pin
// click → card on the watch page, five runs each, medians logged.
func TestPagesLatency(t *testing.T) {
	if os.Getenv("LIVECART_PAGES_BENCH") == "" {
		t.Skip("set LIVECART_PAGES_BENCH=1 to measure")
	}
	const runs = 5
	f := newPagesFixture(t)
	f.w1 = f.open(t, "watch", f.viewer1, 1280, 860)
	f.w1.WaitFor("watch page connected", watchConnected, 10*time.Second)
	f.studio = f.open(t, "studio", f.creator, 1440, 1000)
	f.studio.WaitFor("camera preview", `document.querySelector('#preview').videoWidth > 0`, 15*time.Second)

	var live []float64
	for i := 0; i < runs; i++ {
		markFirstFrame(t, f.w1)
		t0 := clickAt(t, f.studio, "#golive")
		first := waitMark(t, f.w1, "firstFrameAt", 15*time.Second)
		live = append(live, first-t0)
		f.w1.WaitFor("moving video", videoMoving, 10*time.Second)
		f.studio.WaitFor("studio live", `document.querySelector('#live-state').dataset.state === 'live'`, 10*time.Second)
		clickAt(t, f.studio, "#stop")
		f.w1.WaitFor("stream idle", `document.querySelector('#status').textContent !== 'LIVE'`, 10*time.Second)
		time.Sleep(time.Second)
	}

	pid := f.addProduct(t, "Aurora runner", "AUR-42", "129.00", 20)
	pinned := fmt.Sprintf(`document.querySelector('#pinned .card[data-id=%s]')`, e2e.JSON(pid))
	pinButton := fmt.Sprintf(`#products tr[data-id=%s] button[aria-pressed]`, e2e.JSON(pid))
	var pins []float64
	for i := 0; i < runs; i++ {
		markWhen(t, f.w1, "pinAt", pinned)
		tPin := clickAt(t, f.studio, pinButton)
		pins = append(pins, waitMark(t, f.w1, "pinAt", 5*time.Second)-tPin)
		f.studio.WaitFor("pinned in the studio", fmt.Sprintf(`document.querySelector(%s).getAttribute('aria-pressed') === 'true'`, e2e.JSON(pinButton)), 5*time.Second)
		clickAt(t, f.studio, pinButton)
		f.w1.WaitFor("card gone", "!"+pinned, 5*time.Second)
		f.studio.WaitFor("unpinned in the studio", fmt.Sprintf(`document.querySelector(%s).getAttribute('aria-pressed') === 'false'`, e2e.JSON(pinButton)), 5*time.Second)
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("Go live click → first frame (ms): %v, median %.0f", rounded(live), median(live))
	t.Logf("pin click → card on the watch page (ms): %v, median %.0f", rounded(pins), median(pins))
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func rounded(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x + 0.5)
	}
	return out
}
