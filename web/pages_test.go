package web

import (
	"net/http"
	"strings"
	"testing"

	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/pages"
)

func TestGuestTokens(t *testing.T) {
	off := newTestEnv(t)
	resp, raw := off.do("POST", "/api/guest", "", map[string]string{"name": "Ann"})
	off.expect(resp, raw, http.StatusNotFound, "not_found", nil)

	on := newTestEnv(t, func(d *Deps) { d.Options.GuestTokens = true })
	tests := []struct {
		body   any
		status int
		code   string
	}{
		{map[string]string{"name": "  Ann   Lee "}, http.StatusCreated, ""},
		{map[string]string{"name": "   "}, http.StatusBadRequest, "bad_request"},
		{map[string]string{"name": strings.Repeat("é", 41)}, http.StatusBadRequest, "bad_request"},
		{map[string]string{"name": "Ann\x1b[2J"}, http.StatusBadRequest, "bad_request"},
		{map[string]string{"name": "Ann\u009b"}, http.StatusBadRequest, "bad_request"},
		{map[string]any{"name": "Ann", "role": "admin"}, http.StatusBadRequest, "bad_request"},
		{"", http.StatusBadRequest, "bad_request"},
	}
	for _, tt := range tests {
		var got guestResponse
		resp, raw := on.do("POST", "/api/guest", "", tt.body)
		if tt.status != http.StatusCreated {
			on.expect(resp, raw, tt.status, tt.code, nil)
			continue
		}
		on.expect(resp, raw, tt.status, "", &got)
		id, err := on.auth.Verify(got.Token)
		if err != nil {
			t.Fatalf("guest token does not verify: %v", err)
		}
		if id.Role != auth.RoleViewer || id.Name != "Ann Lee" || !strings.HasPrefix(id.UserID, "guest-") || id.UserID != got.UserID {
			t.Errorf("got identity %+v, want a viewer named %q with a guest- id %q", id, "Ann Lee", got.UserID)
		}
	}
}

func TestPageRoutes(t *testing.T) {
	e := newTestEnv(t)
	st := e.createStream("creator-1")
	for _, tt := range []struct {
		path   string
		status int
	}{
		{"/", http.StatusOK},
		{"/watch/" + st.ID, http.StatusOK},
		{"/studio/" + st.ID, http.StatusOK},
		{"/moderate/" + st.ID, http.StatusOK},
		{"/watch/nope", http.StatusNotFound},
		{"/static/js/watch.js", http.StatusOK},
		{"/static/js/missing.js", http.StatusNotFound},
	} {
		resp, _ := e.do("GET", tt.path, "", nil)
		if resp.StatusCode != tt.status {
			t.Errorf("GET %s: got %d, want %d", tt.path, resp.StatusCode, tt.status)
		}
		if tt.status == http.StatusOK && resp.Header.Get("Content-Security-Policy") != pages.CSP {
			t.Errorf("GET %s: got CSP %q, want %q", tt.path, resp.Header.Get("Content-Security-Policy"), pages.CSP)
		}
	}
}
