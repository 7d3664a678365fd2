package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/pages/e2e"
)

// chatLineLayout is where a chat line's parts are drawn (CSS pixels, left edges and
// right edges), and the direction its text is laid out in.
type chatLineLayout struct {
	NameRight, TextLeft, TextRight float64
	ToolsLeft                      float64 // -1: the line has no tools (the watch page)
	FirstLeft, LastLeft            float64 // the text's first and last character
	Dir                            string
}

// chatLine measures the chat line whose text is text, in Chromium's own layout.
func chatLine(t *testing.T, tab *e2e.Tab, text string) chatLineLayout {
	t.Helper()
	return e2e.MustEval[chatLineLayout](tab, fmt.Sprintf(`(() => {
		const li = [...document.querySelectorAll('#chat li')].find((l) => l.querySelector('.text').textContent === %s);
		const t = li.querySelector('.text'), tools = li.querySelector('.tools');
		const ch = (i) => { const r = document.createRange(); r.setStart(t.firstChild, i); r.setEnd(t.firstChild, i + 1); return r.getBoundingClientRect(); };
		return {
			NameRight: li.querySelector('.name').getBoundingClientRect().right,
			TextLeft: t.getBoundingClientRect().left, TextRight: t.getBoundingClientRect().right,
			ToolsLeft: tools ? tools.getBoundingClientRect().left : -1,
			FirstLeft: ch(0).left, LastLeft: ch(t.firstChild.length - 1).left,
			Dir: getComputedStyle(t).direction,
		};
	})()`, e2e.JSON(text)))
}

// TestChatBidiIsolated: bidi controls in a chat message or a display name (an
// unclosed U+202E RIGHT-TO-LEFT OVERRIDE) stay inside it. Before, a name ending in
// U+202E drew the sender's message backwards ("dlrow olleh") after the buttons, and a
// message holding one put the moderator's Mute and Delete buttons before its text: the
// name and the text were plain spans of one bidi paragraph. Each is now a <bdi>. A
// Hebrew message still reads right to left, between its name and the buttons.
func TestChatBidiIsolated(t *testing.T) {
	f := newPagesFixture(t)
	eve := f.srv.token(auth.RoleViewer, "viewer-3", "Eve\u202e")
	mod := f.open(t, "moderate", f.moderator, 1280, 860)
	w2 := f.open(t, "watch", f.viewer2, 1280, 860)
	senders := map[string]*e2e.Tab{"eve": f.open(t, "watch", eve, 1280, 860), "vera": f.open(t, "watch", f.viewer1, 1280, 860)}
	for _, tab := range []*e2e.Tab{senders["eve"], senders["vera"]} {
		tab.WaitFor("watch page connected", `document.querySelector('#conn').hidden && !document.querySelector('#chat form').hidden`, 10*time.Second)
	}
	mod.WaitFor("console connected", `document.querySelector('#conn').hidden && document.querySelector('#chat ol')`, 10*time.Second)
	w2.WaitFor("watch page connected", watchConnected, 10*time.Second)

	const plain, override, hebrew = "hello world", "abc\u202edef", "שלום עולם"
	for _, m := range []struct{ from, text string }{{"eve", plain}, {"vera", override}, {"vera", hebrew}} {
		senders[m.from].SetValue("#chat-text", m.text)
		clickAt(t, senders[m.from], "#chat form.row button[type=submit]")
		for _, tab := range []*e2e.Tab{mod, w2} {
			tab.WaitFor("chat line "+m.text, fmt.Sprintf(`[...document.querySelectorAll('#chat li .text')].some((el) => el.textContent === %s)`, e2e.JSON(m.text)), 5*time.Second)
		}
	}

	for name, tab := range map[string]*e2e.Tab{"moderation console": mod, "watch page": w2} {
		for _, text := range []string{plain, override, hebrew} {
			l := chatLine(t, tab, text)
			if l.NameRight > l.TextLeft+0.5 {
				t.Errorf("%s, line %q: name ends at %.1f px, after its text starts (%.1f px); want the name first", name, text, l.NameRight, l.TextLeft)
			}
			if l.ToolsLeft >= 0 && l.ToolsLeft < l.TextRight-0.5 {
				t.Errorf("%s, line %q: buttons start at %.1f px, before its text ends (%.1f px); want them after it", name, text, l.ToolsLeft, l.TextRight)
			}
			switch text {
			case plain: // behind Eve's name with its unclosed override
				if l.FirstLeft >= l.LastLeft || l.Dir != "ltr" {
					t.Errorf("%s, line %q: first letter at %.1f px, last at %.1f px, direction %s; want it left to right", name, text, l.FirstLeft, l.LastLeft, l.Dir)
				}
			case hebrew:
				if l.FirstLeft <= l.LastLeft || l.Dir != "rtl" {
					t.Errorf("%s, line %q: first letter at %.1f px, last at %.1f px, direction %s; want it right to left", name, text, l.FirstLeft, l.LastLeft, l.Dir)
				}
			}
		}
		if got := e2e.MustEval[string](tab, fmt.Sprintf(`[...document.querySelectorAll('#chat li .text')].find((el) => el.textContent === %s).textContent`, e2e.JSON(override))); got != override {
			t.Errorf("%s: the message with the override shows %q, want it as sent %q", name, got, override)
		}
	}
	for _, tab := range []*e2e.Tab{mod, w2, senders["eve"], senders["vera"]} {
		if issues := tab.Issues(); len(issues) > 0 {
			t.Errorf("page logged errors: %q", issues)
		}
	}
}
