package main

import (
	"io"
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
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
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
			t.Fatalf("%s %s on %s: got %d %s, want %d", method, path, base, resp.StatusCode, raw, want)
		}
	}
	restart := "a=ice-ufrag:newufrag\r\na=ice-pwd:newpassword0123456789abcd\r\n"
	do(c.a, "PATCH", "application/trickle-ice-sdpfrag", restart, http.StatusUnprocessableEntity)
	do(c.a, "DELETE", "", "", http.StatusOK)
	waitMetrics(t, c.b, map[string]float64{"livecart_media_viewers": 0})
	do(c.a, "DELETE", "", "", http.StatusNotFound)
	do(c.b, "DELETE", "", "", http.StatusNotFound)
}
