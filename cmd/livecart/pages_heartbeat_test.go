package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/livecart/livecart/web/pages/e2e"
)

// TestWatchPageQuietStreamNoPings: a watch page on a stream where nothing happens. The
// page pinged after every 7 s of silence ({"type":"ping"}, to tell a dead connection
// from a quiet one): ~190 µs of server CPU a ping at 3,000 viewers, ~1,400 pings a
// second at 10,000 (docs/BENCHMARKS.md, Pages). Now it asks for the server's
// heartbeats, which a silent stream sends every ~5 s as one fan-out, and sends no ping
// while they come; TestWatchPageSilentConnectionReplaced checks that a dead route is
// still given up within ~15 s.
func TestWatchPageQuietStreamNoPings(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	f := newPagesFixture(t)
	tab := f.browser.NewTab(t, 412, 915)
	tab.AddInitScript(`(() => {
			window.pingsSent = 0;
			window.longestSilence = 0; // ms between two frames, once counting
			const send = WebSocket.prototype.send;
			WebSocket.prototype.send = function (data) {
				if (typeof data === 'string' && data.includes('"ping"')) window.pingsSent++;
				return send.call(this, data);
			};
			window.WebSocket = class extends WebSocket {
				constructor(...args) {
					super(...args);
					let last = 0;
					this.addEventListener('message', () => {
						const now = performance.now();
						if (last && window.countSilence) window.longestSilence = Math.max(window.longestSilence, now - last);
						last = now;
					});
				}
			};
		})()`)
	tab.Navigate(fmt.Sprintf("%s/watch/%s?token=%s", f.srv.base, f.sid, f.viewer1))
	tab.WaitFor("connected", watchConnected, 10*time.Second)
	e2e.MustEval[bool](tab, `window.countSilence = true`)
	time.Sleep(13 * time.Second) // the page pinged after 7 s of silence, checked every 2 s
	// The heartbeats' cadence against the page's 7 s: how near the run came to a ping.
	silence := time.Duration(e2e.MustEval[float64](tab, `window.longestSilence`) * float64(time.Millisecond))
	t.Logf("longest silence between two frames the page saw: %v", silence.Round(time.Millisecond))
	if n := e2e.MustEval[int](tab, `window.pingsSent`); n != 0 {
		t.Errorf("a page on a quiet stream sent %d pings in 13 s (longest silence %v), want none (the server's heartbeats show the connection alive)", n, silence.Round(time.Millisecond))
	}
	if !e2e.MustEval[bool](tab, `document.querySelector('#conn').hidden`) {
		t.Errorf("the quiet stream's page shows the reconnecting banner")
	}
	if issues := tab.Issues(); len(issues) > 0 {
		t.Errorf("page logged errors: %q", issues)
	}
}
