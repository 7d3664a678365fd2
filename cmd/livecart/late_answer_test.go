package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/livecart/livecart/web/auth"
)

// answeredWhileStalled makes the request (what) that Redis stalls at: it must have
// reached Redis and answered 503 within frozenAnswerWithin. A second later Redis thaws
// and runs it.
func answeredWhileStalled(t *testing.T, what string, proxy *tripProxy, thaw func(), method, url, token string, body any) {
	t.Helper()
	code, ecode, _, took := timedRequest(t, method, url, token, body, nil)
	select {
	case <-proxy.tripped:
	default:
		t.Fatalf("the %s never reached Redis", what)
	}
	if code != 503 || took > frozenAnswerWithin {
		t.Fatalf("%s with Redis stalled: got %d %q after %v, want 503 within %v", what, code, ecode, took, frozenAnswerWithin)
	}
	time.Sleep(time.Second)
	thaw()
}

// TestHideAnsweredLateStillTold: Redis stalls (SIGSTOP) right when a moderator's hide of
// a pinned product reaches it, and runs the hide when it thaws, after the request's
// redis.request_timeout: the request answers 503, but the hide went in. Its product and
// unpin events must still reach the viewers and its audit line be written (a retry
// finds the product hidden already and changes nothing, so nobody else tells them).
// Before: neither event ever came and the audit had no hide.
func TestHideAnsweredLateStillTold(t *testing.T) {
	var armed atomic.Pointer[string] // the product whose hide script freezes Redis
	base, proxy, thaw := startStallingServer(t, "lc-late", func(cmd [][]byte) bool {
		_, args, ok := scriptCall(cmd)
		pid := armed.Load()
		return ok && pid != nil && len(args) == 2 && bytes.Equal(args[0], []byte(*pid))
	})

	creator, mod := mint(t, auth.RoleCreator, "alice"), mint(t, auth.RoleModerator, "mo")
	var st, p struct{ ID string }
	call(t, "POST", base+"/api/streams", creator, map[string]string{"title": "A"}, 201, &st)
	call(t, "POST", base+"/api/streams/"+st.ID+"/products", creator, map[string]any{
		"sku": "S", "title": "T", "price_cents": 100, "currency": "USD", "stock": 5}, 201, &p)
	call(t, "POST", base+"/api/streams/"+st.ID+"/pins", creator, map[string]string{"product_id": p.ID}, 200, nil)
	ws := dialWS(t, base, st.ID, "")
	snap := next(t, ws, "snapshot")

	armed.Store(&p.ID)
	answeredWhileStalled(t, "hide", proxy, thaw, "PATCH", base+"/api/products/"+p.ID, mod, map[string]bool{"hidden": true})

	seq, gotProduct := snap.Seq, false
	for done := false; !done; {
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, raw, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("after the thaw, waiting for the hide's product and unpin events (last seq %d, product seen %v): %v", seq, gotProduct, err)
		}
		var f frame
		json.Unmarshal(raw, &f)
		if f.Type == "viewers" {
			seq = f.Seq
			continue
		}
		if f.Seq != seq+1 {
			t.Fatalf("%s event with seq %d after seq %d, want %d", f.Type, f.Seq, seq, seq+1)
		}
		seq = f.Seq
		switch f.Type {
		case "product":
			gotProduct = true
		case "unpin":
			if !gotProduct {
				t.Fatal("unpin event before the hide's product event")
			}
			done = true
		default:
			t.Fatalf("got a %s event, want the hide's product and unpin", f.Type)
		}
	}
	var audit []struct{ Action, Target string }
	call(t, "GET", base+"/api/streams/"+st.ID+"/audit", creator, nil, 200, &audit)
	hides := 0
	for _, e := range audit {
		if e.Action == "hide" && e.Target == p.ID {
			hides++
		}
	}
	if hides != 1 {
		t.Fatalf("audit after the late hide: %d hide entries, want 1 (%+v)", hides, audit)
	}
}

// TestEndAnsweredLateStillTold: as TestHideAnsweredLateStillTold for ending a stream
// with an active sale: the request answers 503, the end went in, and the viewers still
// get the sale's ended event, the stream event and the normal close (a retry answers
// the ended stream unchanged and tells nobody). Before: the viewer heard nothing and
// stayed connected.
func TestEndAnsweredLateStillTold(t *testing.T) {
	var armed atomic.Pointer[string] // the stream whose end script freezes Redis
	base, proxy, thaw := startStallingServer(t, "lc-late", func(cmd [][]byte) bool {
		keys, args, ok := scriptCall(cmd)
		sid := armed.Load()
		// stream_end's call: ARGV = now (RFC 3339), now_us.
		if !ok || sid == nil || len(keys) != 1 || len(args) != 2 || !bytes.HasSuffix(keys[0], []byte("{"+*sid+"}:")) {
			return false
		}
		_, err := time.Parse(time.RFC3339Nano, string(args[0]))
		return err == nil
	})

	creator := mint(t, auth.RoleCreator, "alice")
	var st, p, sale struct{ ID string }
	call(t, "POST", base+"/api/streams", creator, map[string]string{"title": "A"}, 201, &st)
	call(t, "POST", base+"/api/streams/"+st.ID+"/products", creator, map[string]any{
		"sku": "S", "title": "T", "price_cents": 100, "currency": "USD", "stock": 5}, 201, &p)
	call(t, "POST", base+"/api/streams/"+st.ID+"/sales", creator, map[string]any{
		"product_id": p.ID, "price_cents": 50, "quantity": 2, "duration_s": 600}, 201, &sale)
	ws := dialWS(t, base, st.ID, "")
	next(t, ws, "snapshot")

	armed.Store(&st.ID)
	answeredWhileStalled(t, "end", proxy, thaw, "POST", base+"/api/streams/"+st.ID+"/end", creator, nil)

	saleEnded := false
	for {
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, raw, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("after the thaw, waiting for the end's sale and stream events (sale ended seen %v): %v", saleEnded, err)
		}
		var f frame
		json.Unmarshal(raw, &f)
		if f.Type == "sale" && f.Sale.ID == sale.ID && f.Sale.Status == "ended" {
			saleEnded = true
		}
		if f.Type == "stream" {
			if !saleEnded {
				t.Fatal("stream event before the sale's ended event")
			}
			break
		}
	}
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("after the stream event: %v, want a normal close", err)
	}
}

// TestEndWithSlowEventsAudited: Redis stalls (SIGSTOP, 1.5 s) when the end of a stream
// publishes its sale's ended event, after the end went in. The request answers 200 and
// the stream_end audit entry is written all the same. Before: the events' wait used
// up the request's redis.request_timeout, and the audit append, made after them on the
// request's context, failed at once: no stream_end entry.
func TestEndWithSlowEventsAudited(t *testing.T) {
	var armed atomic.Pointer[string] // the stream whose next sale event freezes Redis
	base, proxy, thaw := startStallingServer(t, "lc-late", func(cmd [][]byte) bool {
		keys, args, ok := scriptCall(cmd)
		sid := armed.Load()
		return ok && sid != nil && len(keys) > 0 && len(args) > 0 &&
			bytes.Contains(keys[0], []byte(":live:{"+*sid+"}:seq")) && bytes.Equal(args[0], []byte(`"sale"`))
	})

	creator := mint(t, auth.RoleCreator, "alice")
	var st, p struct{ ID string }
	call(t, "POST", base+"/api/streams", creator, map[string]string{"title": "A"}, 201, &st)
	call(t, "POST", base+"/api/streams/"+st.ID+"/products", creator, map[string]any{
		"sku": "S", "title": "T", "price_cents": 100, "currency": "USD", "stock": 5}, 201, &p)
	call(t, "POST", base+"/api/streams/"+st.ID+"/sales", creator, map[string]any{
		"product_id": p.ID, "price_cents": 50, "quantity": 2, "duration_s": 600}, 201, nil)

	armed.Store(&st.ID)
	go func() {
		select {
		case <-proxy.tripped:
			time.Sleep(1500 * time.Millisecond)
		case <-time.After(10 * time.Second):
		}
		thaw()
	}()
	code, ecode, _, took := timedRequest(t, "POST", base+"/api/streams/"+st.ID+"/end", creator, nil, nil)
	if code != 200 || took > frozenAnswerWithin {
		t.Fatalf("end with its events stalled: got %d %q after %v, want 200 within %v", code, ecode, took, frozenAnswerWithin)
	}
	var audit []struct{ Action string }
	for deadline := time.Now().Add(5 * time.Second); ; {
		call(t, "GET", base+"/api/streams/"+st.ID+"/audit", creator, nil, 200, &audit)
		if slices.ContainsFunc(audit, func(e struct{ Action string }) bool { return e.Action == "stream_end" }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit after the end: %+v, want a stream_end entry", audit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
