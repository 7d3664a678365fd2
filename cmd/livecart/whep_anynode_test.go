package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestWHEPSessionOnAnyNode: two nodes on one Redis; a viewer watches on B (pulling
// from the publisher on A) and its WHEP session (Location /whep/{sid}/{rid}) is then
// patched and deleted through A, as behind a load balancer. A passes them on to B:
// the ICE restart is B's 422, the DELETE is 200 and B's viewer is gone; a second
// DELETE is 404 on both nodes. A answered 404 "no such media session" to both.
func TestWHEPSessionOnAnyNode(t *testing.T) {
	c := newMuteCluster(t)
	c.publishAt(t, c.a)
	v, s := c.watchAt(t, c.b)
	waitStats(t, v, "viewer on B gets audio and video", gotMedia)
	waitMetrics(t, c.b, map[string]float64{"livecart_media_viewers": 1})
	path := strings.TrimPrefix(s.location, c.b)
	if !strings.HasPrefix(path, "/whep/"+c.sid+"/") {
		t.Fatalf("Location %q: want /whep/%s/{rid} on %s", s.location, c.sid, c.b)
	}
	do := func(base, method, ctype, body string, want int) {
		t.Helper()
		sessionRequest(t, method, base+path, "", ctype, body, want)
	}
	restart := "a=ice-ufrag:newufrag\r\na=ice-pwd:newpassword0123456789abcd\r\n"
	do(c.a, "PATCH", "application/trickle-ice-sdpfrag", restart, http.StatusUnprocessableEntity)
	do(c.a, "DELETE", "", "", http.StatusOK)
	waitMetrics(t, c.b, map[string]float64{"livecart_media_viewers": 0})
	do(c.a, "DELETE", "", "", http.StatusNotFound)
	do(c.b, "DELETE", "", "", http.StatusNotFound)
}
