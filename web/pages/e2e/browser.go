// Package e2e drives livecart's pages in headless Chromium (chromedp) against a real
// server: the browser helpers live here, the tests beside them.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// ChromiumPath is where Debian's chromium package puts the browser; LIVECART_CHROMIUM
// overrides it.
const ChromiumPath = "/usr/bin/chromium"

// Browser is one headless Chromium with a fresh profile and a fake camera and
// microphone. Tabs share it.
type Browser struct {
	ctx    context.Context // the browser's root context (first tab)
	cancel func()
}

// NewBrowser starts Chromium and stops it when the test ends. It fails the test when
// Chromium cannot start: these tests never skip.
func NewBrowser(t testing.TB) *Browser {
	t.Helper()
	exec := ChromiumPath
	if p := os.Getenv("LIVECART_CHROMIUM"); p != "" {
		exec = p
	}
	if _, err := os.Stat(exec); err != nil {
		t.Fatalf("chromium not found at %s (apt-get install -y chromium): %v", exec, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exec),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// Background tabs must keep their timers and video running at full speed.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("mute-audio", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	// The first Do starts the browser; its context must not carry a timeout (that
	// would stop the browser with it), so the wait is bounded from outside.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			cancel()
			acancel()
			t.Fatalf("chromium did not start (%s): %v", exec, err)
		}
	case <-time.After(60 * time.Second):
		cancel()
		acancel()
		t.Fatalf("chromium did not start within 60 s (%s)", exec)
	}
	b := &Browser{ctx: ctx, cancel: func() { cancel(); acancel() }}
	t.Cleanup(b.cancel)
	return b
}

// Tab is one page with a log of its console errors, uncaught exceptions and CSP
// violations.
type Tab struct {
	Ctx    context.Context
	Close  func() // closes the tab (also done when the test ends)
	t      testing.TB
	mu     sync.Mutex
	issues []string // guarded by mu
}

// NewTab opens a page in a new window, sized width×height when width > 0, and closes
// it when the test ends.
func (b *Browser) NewTab(t testing.TB, width, height int64) *Tab {
	t.Helper()
	tab := &Tab{t: t}
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithListener(tab.listen))
	t.Cleanup(cancel)
	tab.Ctx, tab.Close = ctx, cancel
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("new tab: %v", err)
	}
	if width > 0 {
		tab.Run(10*time.Second, chromedp.EmulateViewport(width, height))
	}
	return tab
}

func (tab *Tab) listen(ev any) {
	var issue string
	switch e := ev.(type) {
	case *runtime.EventExceptionThrown:
		issue = "exception: " + e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			issue += " " + e.ExceptionDetails.Exception.Description
		}
	case *runtime.EventConsoleAPICalled:
		if e.Type != runtime.ConsoleAPICalledTypeError {
			return
		}
		var parts []string
		for _, a := range e.Args {
			parts = append(parts, string(a.Value)+a.Description)
		}
		issue = "console.error: " + strings.Join(parts, " ")
	case *log.EventEntryAdded:
		// Failed requests (404 of a missing stream …) are the pages' business; CSP
		// violations and other browser-side errors are not.
		if e.Entry.Level != log.EntryLevelError || e.Entry.Source == log.EntrySourceNetwork {
			return
		}
		issue = fmt.Sprintf("log %s: %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL)
	default:
		return
	}
	tab.mu.Lock()
	tab.issues = append(tab.issues, issue)
	tab.mu.Unlock()
}

// Issues returns the errors the page logged so far.
func (tab *Tab) Issues() []string {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return append([]string(nil), tab.issues...)
}

// Run runs chromedp actions with a timeout, failing the test on error.
func (tab *Tab) Run(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tab.t.Fatalf("chromedp: %v (page issues: %v)", err, tab.Issues())
	}
}

// AddInitScript makes src run in every document the tab loads from now on, before the
// page's own scripts (to count or stand in for browser APIs).
func (tab *Tab) AddInitScript(src string) {
	tab.t.Helper()
	tab.Run(10*time.Second, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src})
		return err
	}))
}

// Navigate opens url and waits for the page's body.
func (tab *Tab) Navigate(url string) {
	tab.t.Helper()
	tab.Run(20*time.Second, chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("body")))
}

// Eval evaluates a JavaScript expression (promises awaited) as a T.
func Eval[T any](tab *Tab, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(tab.Ctx, 15*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// MustEval is Eval failing the test on error.
func MustEval[T any](tab *Tab, expr string) T {
	tab.t.Helper()
	v, err := Eval[T](tab, expr)
	if err != nil {
		tab.t.Fatalf("eval %s: %v (page issues: %v)", expr, err, tab.Issues())
	}
	return v
}

// WaitFor polls a boolean JavaScript expression until it is true and returns how long
// that took; it fails the test after timeout, showing the page's text.
func (tab *Tab) WaitFor(what, expr string, timeout time.Duration) time.Duration {
	tab.t.Helper()
	d, err := tab.Poll(expr, timeout)
	if err != nil {
		text, _ := Eval[string](tab, `document.body ? document.body.innerText.slice(0, 3000) : ''`)
		tab.t.Fatalf("waiting for %s (%s): %v\npage issues: %v\npage text:\n%s", what, expr, err, tab.Issues(), text)
	}
	return d
}

// Poll is WaitFor returning an error instead of failing the test. The loop runs inside
// the page (every 5 ms) so the time it reports is the page's own, free of round trips.
func (tab *Tab) Poll(expr string, timeout time.Duration) (time.Duration, error) {
	js := fmt.Sprintf(`new Promise((resolve) => {
		const t0 = performance.now();
		const check = () => {
			let ok = false;
			try { ok = !!(%s); } catch (e) { ok = false; }
			if (ok) return resolve(performance.now() - t0);
			if (performance.now() - t0 > %d) return resolve(-1);
			setTimeout(check, 5);
		};
		check();
	})`, expr, timeout.Milliseconds())
	ctx, cancel := context.WithTimeout(tab.Ctx, timeout+10*time.Second)
	defer cancel()
	ms, err := chromedp.Run(ctx, chromedp.Evaluate[float64](js, chromedp.EvalAwaitPromise))
	if err != nil {
		return 0, err
	}
	if ms < 0 {
		return 0, fmt.Errorf("not true within %v", timeout)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// Click clicks the first element matching a CSS selector once it is visible.
func (tab *Tab) Click(sel string) {
	tab.t.Helper()
	tab.Run(10*time.Second, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// SetValue sets an input's value.
func (tab *Tab) SetValue(sel, value string) {
	tab.t.Helper()
	tab.Run(10*time.Second, chromedp.SetValue(chromedp.CSS(sel), value))
}

// Screenshot saves a PNG of the tab's viewport to path.
func (tab *Tab) Screenshot(path string) {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, 20*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tab.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		tab.t.Fatal(err)
	}
}

// JSON quotes s for use inside a JavaScript expression.
func JSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
