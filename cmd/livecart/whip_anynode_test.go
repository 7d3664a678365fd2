package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/livecart/livecart/web/auth"
)

// TestWHIPSessionOnAnyNode: two nodes on one Redis; a publisher goes live on A and its
// WHIP session (Location /whip/{sid}/{rid}) is then patched and deleted through B, as
// behind a load balancer. B passes them on to A: the ICE restart is A's 422, the DELETE
// is 200 and the stream goes idle; a second DELETE is 404. B answered 404 "no such media
// session" to both, and the stream stayed live until the publisher's peer went away.
// B's own checks still come first: a viewer's token is 403 there.
func TestWHIPSessionOnAnyNode(t *testing.T) {
	c := newMuteCluster(t)
	s := publishSession(t, c.api, c.a, c.sid, c.creator)
	waitStatus(t, c.b, c.sid, "live", 5*time.Second, "publisher on A")
	path := strings.TrimPrefix(s.location, c.a)
	if !strings.HasPrefix(path, "/whip/"+c.sid+"/") {
		t.Fatalf("Location %q: want /whip/%s/{rid} on %s", s.location, c.sid, c.a)
	}
	do := func(method, token, ctype, body string, want int) {
		t.Helper()
		sessionRequest(t, method, c.b+path, token, ctype, body, want)
	}
	restart := "a=ice-ufrag:newufrag\r\na=ice-pwd:newpassword0123456789abcd\r\n"
	do("PATCH", c.creator, "application/trickle-ice-sdpfrag", restart, http.StatusUnprocessableEntity)
	do("DELETE", mint(t, auth.RoleViewer, "vic"), "", "", http.StatusForbidden)
	do("DELETE", c.creator, "", "", http.StatusOK)
	waitStatus(t, c.a, c.sid, "idle", 5*time.Second, "publisher's session deleted through B")
	do("DELETE", c.creator, "", "", http.StatusNotFound)
}

// sessionRequest sends a request on a media session's URL (token and ctype may be
// empty) and fails the test unless it is answered want.
func sessionRequest(t *testing.T, method, url, token, ctype, body string, want int) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: got %d %s, want %d", method, url, resp.StatusCode, raw, want)
	}
}
