package web

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/livecart/livecart/stream"
	"github.com/livecart/livecart/web/auth"
)

// madeUpCandidates returns n distinct host candidates on loopback (ports from first
// on), as SDP lines. Nothing listens there.
func madeUpCandidates(n, first int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "a=candidate:x%d 1 udp 2130706431 127.0.0.1 %d typ host\r\n", i, first+i)
	}
	return b.String()
}

// withCandidates adds SDP lines after the offer's first candidate.
func withCandidates(t *testing.T, offer, lines string) string {
	t.Helper()
	i := strings.Index(offer, "a=candidate:")
	if i < 0 {
		t.Fatal("the offer has no candidate")
	}
	j := i + strings.Index(offer[i:], "\n") + 1
	return offer[:j] + lines + offer[j:]
}

// TestMediaCandidateBound: a WHIP or WHEP offer with more distinct ICE candidates than
// the relay takes (stream.DefaultMaxRemoteCandidates) is 400 bad_request, judged
// before the stream's state; a trickle PATCH that would pass the bound is 400 too and
// the session goes on taking smaller ones.
func TestMediaCandidateBound(t *testing.T) {
	e := newMediaEnv(t)
	st := e.createStream("alice")
	owner := e.token(auth.RoleCreator, "alice")
	over := madeUpCandidates(stream.DefaultMaxRemoteCandidates+1, 19300)

	resp, raw := e.sdpReq("POST", "/whep/"+st.ID, "", "application/sdp", withCandidates(t, sdpOffer(t, false), over))
	e.expect(resp, raw, http.StatusBadRequest, "bad_request", nil)
	if !strings.Contains(string(raw), "too many ICE candidates") {
		t.Errorf("WHEP over the bound: got %s, want it to say too many ICE candidates", raw)
	}
	resp, raw = e.sdpReq("POST", "/whip/"+st.ID, owner, "application/sdp", withCandidates(t, sdpOffer(t, true), over))
	e.expect(resp, raw, http.StatusBadRequest, "bad_request", nil)
	if got := e.streamStatus(st.ID); got != "idle" {
		t.Errorf("stream after a refused WHIP: got %s, want idle", got)
	}

	resp, raw = e.sdpReq("POST", "/whep/"+st.ID, "", "application/sdp", sdpOffer(t, false))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("plain WHEP: got %d, want 201 (%s)", resp.StatusCode, raw)
	}
	loc := resp.Header.Get("Location")
	resp, raw = e.sdpReq("PATCH", loc, "", "application/trickle-ice-sdpfrag", "a=mid:0\r\n"+over)
	e.expect(resp, raw, http.StatusBadRequest, "bad_request", nil)
	if !strings.Contains(string(raw), "too many ICE candidates") {
		t.Errorf("PATCH over the bound: got %s, want it to say too many ICE candidates", raw)
	}
	resp, raw = e.sdpReq("PATCH", loc, "", "application/trickle-ice-sdpfrag", "a=mid:0\r\n"+madeUpCandidates(2, 19300))
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("PATCH of two candidates after a refused one: got %d, want 204 (%s)", resp.StatusCode, raw)
	}

	// Shape before state: the offer over the bound to an ended stream is still 400.
	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/end", owner, nil)
	e.expect(resp, raw, http.StatusOK, "", nil)
	resp, raw = e.sdpReq("POST", "/whep/"+st.ID, "", "application/sdp", withCandidates(t, sdpOffer(t, false), over))
	e.expect(resp, raw, http.StatusBadRequest, "bad_request", nil)
}
