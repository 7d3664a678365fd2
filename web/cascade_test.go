package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/stream"
	"github.com/livecart/livecart/web/auth"
)

// TestCascadeAgainstOrigin drives web.Cascade (what a node uses to pull a stream) at a
// real server as the origin: the origin it reads from the store follows the publisher,
// WHEP over HTTP gives an answer and an absolute session URL, DELETE ends it, and an
// ended stream reads as stream.ErrEnded.
func TestCascadeAgainstOrigin(t *testing.T) {
	e := newMediaEnv(t)
	e.web.deps.Options.NodeID = "origin"
	e.web.deps.Options.AdvertiseURL = func() string { return e.srv.URL }
	st := e.createStream("alice")
	ctx := context.Background()
	far := NewCascade(e.store, "far", nil)
	self := NewCascade(e.store, "origin", nil)

	if o, err := far.Origin(ctx, st.ID); err != nil || o != "" {
		t.Fatalf("Origin before any publisher: got %q %v, want none", o, err)
	}
	resp, raw := e.sdpReq("POST", "/whip/"+st.ID, e.token(auth.RoleCreator, "alice"), "application/sdp", sdpOffer(t, true))
	e.expect(resp, raw, http.StatusCreated, "", nil)
	pubLoc := resp.Header.Get("Location")
	if o, err := far.Origin(ctx, st.ID); err != nil || o != e.srv.URL {
		t.Fatalf("Origin on another node: got %q %v, want %q", o, err, e.srv.URL)
	}
	if o, err := self.Origin(ctx, st.ID); err != nil || o != "" {
		t.Fatalf("Origin on the origin node itself: got %q %v, want none", o, err)
	}

	answer, session, err := far.Subscribe(ctx, e.srv.URL, st.ID, sdpOffer(t, false))
	if err != nil || !strings.HasPrefix(answer, "v=0") || !strings.HasPrefix(session, e.srv.URL+"/whep/"+st.ID+"/") {
		t.Fatalf("Subscribe: got answer %.20q session %q err %v, want an SDP answer and %s/whep/%s/<id>", answer, session, err, e.srv.URL, st.ID)
	}
	rid := session[strings.LastIndex(session, "/")+1:]
	if !e.web.deps.Media.Exists(st.ID, rid, stream.RoleViewer) {
		t.Fatalf("the origin has no WHEP session %s", rid)
	}
	if err := far.Unsubscribe(ctx, session); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	if e.web.deps.Media.Exists(st.ID, rid, stream.RoleViewer) {
		t.Errorf("the origin still has WHEP session %s after Unsubscribe", rid)
	}
	if err := far.Unsubscribe(ctx, session); err != nil {
		t.Errorf("Unsubscribe of a session already gone: got %v, want nil", err)
	}
	if _, _, err := far.Subscribe(ctx, e.srv.URL, st.ID, "garbage"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("Subscribe with a bad offer: got %v, want the origin's 400", err)
	}

	// The publisher leaves: no origin, the stream idle.
	resp, raw = e.sdpReq("DELETE", pubLoc, e.token(auth.RoleCreator, "alice"), "", "")
	e.expect(resp, raw, http.StatusOK, "", nil)
	if o, err := far.Origin(ctx, st.ID); err != nil || o != "" {
		t.Errorf("Origin after the publisher left: got %q %v, want none", o, err)
	}
	if got := e.streamStatus(st.ID); got != cart.StreamIdle {
		t.Errorf("status after the publisher left: got %s, want idle", got)
	}

	// A fresh claim of another node refuses WHIP here (409); a stale one does not.
	other := cart.MediaOrigin{NodeID: "other", URL: "http://127.0.0.1:9", Session: "x"}
	if err := e.store.ClaimMediaOrigin(ctx, st.ID, other, time.Now(), originTTL); err != nil {
		t.Fatal(err)
	}
	if o, err := far.Origin(ctx, st.ID); err != nil || o != other.URL {
		t.Errorf("Origin with another node's fresh claim: got %q %v, want %q", o, err, other.URL)
	}
	resp, raw = e.sdpReq("POST", "/whip/"+st.ID, e.token(auth.RoleCreator, "alice"), "application/sdp", sdpOffer(t, true))
	e.expect(resp, raw, http.StatusConflict, "conflict", nil)
	if _, err := e.store.ClearMediaOrigin(ctx, st.ID, "x"); err != nil {
		t.Fatal(err)
	}
	if err := e.store.ClaimMediaOrigin(ctx, st.ID, other, time.Now().Add(-2*originTTL), originTTL); err != nil {
		t.Fatal(err)
	}
	if o, err := far.Origin(ctx, st.ID); !errors.Is(err, stream.ErrOriginStale) || o != other.URL {
		t.Errorf("Origin with a stale claim: got %q %v, want %q and stream.ErrOriginStale", o, err, other.URL)
	}
	resp, raw = e.sdpReq("POST", "/whip/"+st.ID, e.token(auth.RoleCreator, "alice"), "application/sdp", sdpOffer(t, true))
	e.expect(resp, raw, http.StatusCreated, "", nil)
	if o, err := e.store.MediaOrigin(ctx, st.ID, time.Now()); err != nil || o.NodeID != "origin" {
		t.Errorf("origin after WHIP over a stale claim: got %+v %v, want this node", o, err)
	}

	// Ended: every node's pull ends.
	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/end", e.token(auth.RoleCreator, "alice"), nil)
	e.expect(resp, raw, http.StatusOK, "", nil)
	if _, err := far.Origin(ctx, st.ID); !errors.Is(err, stream.ErrEnded) {
		t.Errorf("Origin of an ended stream: got %v, want stream.ErrEnded", err)
	}
}

// TestCascadeFailedSignallingEndsOriginSession: a node pulling a stream signals with
// the origin and the signalling fails after the origin made its session. The origin's
// session count returns to its baseline at once, not after the session's ICE timeouts
// (about 15 s): the puller DELETEs a session whose Location it got (the answer's body
// was cut off on the way), and the origin drops one whose answer nobody waited for (the
// puller's deadline ran out first).
func TestCascadeFailedSignallingEndsOriginSession(t *testing.T) {
	e := newMediaEnv(t)
	relay := e.web.deps.Media.(*stream.Relay)
	far := NewCascade(e.store, "far", nil)
	const settle = 1500 * time.Millisecond // well under the ICE timeouts

	// waitBaseline fails unless the origin is back to no WHEP session of sid within
	// settle.
	waitBaseline := func(t *testing.T, sid string) {
		t.Helper()
		deadline := time.Now().Add(settle)
		for relay.Viewers(sid) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the origin still has %d WHEP sessions after %v, want 0", relay.Viewers(sid), settle)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	t.Run("answer cut off", func(t *testing.T) {
		// A proxy in front of the origin passes the 201 and its Location on, then only
		// half the answer before the connection breaks. DELETEs pass through.
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			req, _ := http.NewRequestWithContext(r.Context(), r.Method, e.srv.URL+r.URL.Path, r.Body)
			req.Header = r.Header.Clone()
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if r.Method != http.MethodPost {
				w.WriteHeader(resp.StatusCode)
				w.Write(body)
				return
			}
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			fmt.Fprintf(buf, "HTTP/1.1 %s\r\nLocation: %s\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n",
				resp.Status, resp.Header.Get("Location"), len(body))
			buf.Write(body[:len(body)/2])
			buf.Flush()
		}))
		defer proxy.Close()
		st := e.createStream("alice")
		_, _, err := far.Subscribe(context.Background(), proxy.URL, st.ID, sdpOffer(t, false))
		if err == nil {
			t.Fatal("Subscribe through a proxy that cuts the answer: got no error")
		}
		waitBaseline(t, st.ID)
	})

	t.Run("answer too late", func(t *testing.T) {
		// The origin's answer to a WHEP offer leaves only once the client has gone (a
		// slow origin); its session exists by then.
		late := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				w = lateWriter{ResponseWriter: w, ctx: r.Context()}
			}
			e.web.Handler().ServeHTTP(w, r)
		}))
		defer late.Close()
		st := e.createStream("alice")
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		if _, _, err := far.Subscribe(ctx, late.URL, st.ID, sdpOffer(t, false)); err == nil {
			t.Fatal("Subscribe past its deadline: got no error")
		}
		waitBaseline(t, st.ID)
	})
}

// lateWriter holds a response back until its request's context ends (the client gave
// up), or 10 s.
type lateWriter struct {
	http.ResponseWriter
	ctx context.Context
}

func (w lateWriter) WriteHeader(code int) {
	select {
	case <-w.ctx.Done():
	case <-time.After(10 * time.Second):
	}
	w.ResponseWriter.WriteHeader(code)
}
