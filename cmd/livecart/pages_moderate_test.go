package main

import (
	"regexp"
	"testing"
	"time"

	"github.com/livecart/livecart/web/pages/e2e"
)

// TestModeratorNoticesNamePeople: the moderator mutes and deletes a viewer's chat line.
// The console's notices named the viewer by their user id ("Muted viewer-1 until …"),
// the muted list and the audit log too, while the chat line beside them showed the
// name. Now they name the display name the chat has seen, the id in a title.
func TestModeratorNoticesNamePeople(t *testing.T) {
	f := newPagesFixture(t)
	w1 := f.open(t, "watch", f.viewer1, 412, 915)
	mod := f.open(t, "moderate", f.moderator, 1280, 860)
	w1.WaitFor("watch page connected", `document.querySelector('#conn').hidden && !document.querySelector('#chat form').hidden`, 10*time.Second)
	mod.WaitFor("console connected", `document.querySelector('#conn').hidden && document.querySelector('#chat ol')`, 10*time.Second)
	say := func(text string) {
		t.Helper()
		w1.SetValue("#chat-text", text)
		clickAt(t, w1, "#chat form.row button[type=submit]")
	}
	notice := `document.querySelector('#chat .notice').textContent`
	line := `document.querySelector('#chat li[data-user="viewer-1"]')`

	say("first line")
	mod.WaitFor("the viewer's line", line, 5*time.Second)
	if got := e2e.MustEval[string](mod, line+`.querySelector('.name').title`); got != "viewer-1" {
		t.Errorf("the chat line's name title: got %q, want the user id viewer-1", got)
	}
	clickAt(t, mod, `#chat li[data-user="viewer-1"] button.danger`)
	mod.WaitFor("line deleted", `!`+line, 5*time.Second)
	// The chat_delete event may take the line away before the DELETE's answer comes back
	// and the notice is written.
	mod.WaitFor("delete notice", notice+` !== ''`, 5*time.Second)
	if got := e2e.MustEval[string](mod, notice); !containsFold(got, "Vera") || containsFold(got, "viewer-1") {
		t.Errorf("the notice after a delete: got %q, want it to name Vera (not viewer-1)", got)
	}

	say("second line")
	mod.WaitFor("the viewer's second line", line, 5*time.Second)
	e2e.MustEval[bool](mod, `(document.querySelector('#chat-mute-for').value = '60') !== ''`)
	clickAt(t, mod, `#chat li[data-user="viewer-1"] button:not(.danger)`)
	mod.WaitFor("mute notice", notice+`.includes('Muted')`, 5*time.Second)
	if got := e2e.MustEval[string](mod, notice); !containsFold(got, "Muted Vera until") {
		t.Errorf("the notice after a mute: got %q, want \"Muted Vera until …\"", got)
	}
	muted := `document.querySelector('#mutes li[data-user="viewer-1"]')`
	mod.WaitFor("muted list", muted, 5*time.Second)
	if got := e2e.MustEval[string](mod, muted+`.querySelector('b').textContent`); got != "Vera" {
		t.Errorf("the muted list: got %q, want Vera", got)
	}
	if got := e2e.MustEval[string](mod, muted+`.querySelector('b').title`); got != "viewer-1" {
		t.Errorf("the muted list's title: got %q, want viewer-1", got)
	}
	if got := e2e.MustEval[string](mod, muted+`.querySelector('button').getAttribute('aria-label')`); got != "Unmute Vera" {
		t.Errorf("the unmute button's name: got %q, want \"Unmute Vera\"", got)
	}
	row := `document.querySelector('#audit tr[data-action="mute"]')`
	mod.WaitFor("the mute in the audit log", row, 5*time.Second)
	if got := e2e.MustEval[string](mod, row+`.querySelector('.target').textContent`); got != "Vera" {
		t.Errorf("the audit log's mute target: got %q, want Vera", got)
	}
	if got := e2e.MustEval[string](mod, row+`.querySelector('.who').textContent`); !containsFold(got, "Max Moderator") {
		t.Errorf("the audit log's actor: got %q, want the moderator's name Max Moderator", got)
	}
	clickAt(t, mod, `#mutes li[data-user="viewer-1"] button`)
	mod.WaitFor("unmuted", `!`+muted, 5*time.Second)
	if got := e2e.MustEval[string](mod, `document.querySelector('#controls-out').textContent`); got != "Unmuted Vera." {
		t.Errorf("the notice after an unmute: got %q, want \"Unmuted Vera.\"", got)
	}
	for _, tb := range []*e2e.Tab{w1, mod} {
		if issues := tb.Issues(); len(issues) > 0 {
			t.Errorf("page logged errors: %q", issues)
		}
	}
}

// TestModeratorAuditLogReadableOnPhone: the audit log on a 390 px phone. A mute's (and
// a sale's) details were ISO timestamps, cut by the narrow Action column over five lines
// ("until=/2026-/12-/06T00/:50:2…"). Now times in the details read as the time of day,
// and the log still fits the phone.
func TestModeratorAuditLogReadableOnPhone(t *testing.T) {
	f := newPagesFixture(t)
	var p struct{ ID string }
	f.srv.api("POST", "/api/streams/"+f.sid+"/products", f.creator, map[string]any{
		"sku": "AUR-42", "title": "Aurora runner", "price_cents": 12900, "currency": "USD", "stock": 50}, &p)
	f.srv.api("POST", "/api/streams/"+f.sid+"/sales", f.creator, map[string]any{
		"product_id": p.ID, "price_cents": 7900, "quantity": 20, "duration_s": 600}, nil)
	f.srv.api("POST", "/api/streams/"+f.sid+"/mutes", f.moderator, map[string]any{"user_id": "viewer-1", "duration_s": 300}, nil)
	f.srv.api("DELETE", "/api/streams/"+f.sid+"/mutes/viewer-1", f.moderator, nil, nil)
	mod := f.open(t, "moderate", f.moderator, 390, 844)
	mod.WaitFor("audit log", `document.querySelectorAll('#audit tr').length >= 4`, 10*time.Second)
	iso := regexp.MustCompile(`\d{4}-\d\d-\d\dT`)
	for _, action := range []string{"mute", "sale_create"} {
		details := e2e.MustEval[string](mod, `document.querySelector('#audit tr[data-action="`+action+`"] td.what .note').textContent`)
		if iso.MatchString(details) {
			t.Errorf("the %s entry's details: got %q, want times of day, not ISO timestamps", action, details)
		}
	}
	if bad := e2e.MustEval[[]string](mod, offScreen); len(bad) > 0 {
		t.Errorf("got %q, want nothing past the window's right edge", bad)
	}
}
