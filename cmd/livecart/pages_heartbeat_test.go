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
			const send = WebSocket.prototype.send;
			WebSocket.prototype.send = function (data) {
				if (typeof data === 'string' && data.includes('"ping"')) window.pingsSent++;
				return send.call(this, data);
			};
		})()`)
	tab.Navigate(fmt.Sprintf("%s/watch/%s?token=%s", f.srv.base, f.sid, f.viewer1))
	tab.WaitFor("connected", `document.querySelector('#conn').hidden && document.querySelector('#status').textContent !== '…'`, 10*time.Second)
	time.Sleep(13 * time.Second) // the page pinged after 7 s of silence, checked every 2 s
	if n := e2e.MustEval[int](tab, `window.pingsSent`); n != 0 {
		t.Errorf("a page on a quiet stream sent %d pings in 13 s, want none (the server's heartbeats show the connection alive)", n)
	}
	if !e2e.MustEval[bool](tab, `document.querySelector('#conn').hidden`) {
		t.Errorf("the quiet stream's page shows the reconnecting banner")
	}
	if issues := tab.Issues(); len(issues) > 0 {
		t.Errorf("page logged errors: %q", issues)
	}
}
