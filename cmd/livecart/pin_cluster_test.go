package main

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/livecart/livecart/web/auth"
)

// publishing returns a freezeProxy condition: a publication (publish.lua) of an event
// of type typ whose body holds each of parts.
func publishing(typ string, parts ...string) func(cmd [][]byte) bool {
	return func(cmd [][]byte) bool {
		_, args, ok := scriptCall(cmd)
		if !ok || len(args) < 2 || string(args[0]) != strconv.Quote(typ) {
			return false
		}
		for _, p := range parts {
			if !bytes.Contains(args[1], []byte(p)) {
				return false
			}
		}
		return true
	}
}

// staleChecks reads node base's count of node-death comparisons made
// (livecart_live_stale_checks_total{result="compared"}), 0 while it has none.
func staleChecks(t *testing.T, base string) int {
	t.Helper()
	return max(0, int(metric(t, base, `livecart_live_stale_checks_total{result="compared"}`)))
}

// waitCompared waits (up to 5 s) until node base has made a node-death comparison
// after now: its baseline of the stream it has viewers of is taken.
func waitCompared(t *testing.T, base string) {
	t.Helper()
	before := staleChecks(t, base)
	for deadline := time.Now().Add(5 * time.Second); staleChecks(t, base) <= before; {
		if time.Now().After(deadline) {
			t.Fatal("node B made no node-death comparison within 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nextOf returns the next frame of one of types on c within d after died, failing with
// never if none comes; frames of other types are returned to seen.
func nextOf(t *testing.T, c *websocket.Conn, died time.Time, d time.Duration, never string, seen func(frame), types ...string) frame {
	t.Helper()
	c.SetReadDeadline(died.Add(d))
	for {
		_, raw, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("%s (within %v of node A's death): %v", never, d, err)
		}
		var f frame
		if err := json.Unmarshal(raw, &f); err != nil {
			t.Fatal(err)
		}
		for _, typ := range types {
			if f.Type == typ {
				return f
			}
		}
		if seen != nil {
			seen(f)
		}
	}
}

// pinnedStream creates through base a stream with one product, pinned, and dials a
// viewer to node b past its snapshot and the pin event.
func pinnedStream(t *testing.T, base, b, creator string) (sid, pid string, wb *websocket.Conn) {
	t.Helper()
	sid, pid = newStreamProduct(t, base, creator, "pins", 100)
	wb = dialWS(t, b, sid, "")
	next(t, wb, "snapshot")
	call(t, "POST", base+"/api/streams/"+sid+"/pins", creator, map[string]string{"product_id": pid}, 200, nil)
	next(t, wb, "pin")
	return sid, pid, wb
}

// The node-death rescue of pins, hides and created sales: node A commits the change in
// the store and loses Redis as it publishes the change's event, and is killed. The
// viewer on node B (which has compared the stream once, so it knows what its viewers
// were given) still sees the store's state within about two seconds: the rescue comes
// from node B's once-a-second comparison.
const pinRescueWithin = 3500 * time.Millisecond

// TestUnpinOfDyingNodeRescued: node A unpins a pinned product and dies before the
// unpin event is out. The viewer on node B gets the unpin.
func TestUnpinOfDyingNodeRescued(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	a, b, killAWhenFrozen := startDyingPair(t, "lc-unpindie", publishing("unpin"))
	creator := mint(t, auth.RoleCreator, "alice")
	sid, pid, wb := pinnedStream(t, b, b, creator)
	waitCompared(t, b)

	sendAside("DELETE", a+"/api/streams/"+sid+"/pins/"+pid, creator, nil)
	died := killAWhenFrozen("node A never published the unpin")
	f := nextOf(t, wb, died, pinRescueWithin, "viewer on B never got the unpin", nil, "unpin", "pin")
	if f.Type != "unpin" || f.ProductID != pid {
		t.Fatalf("got %s of %q, want unpin of %s", f.Type, f.ProductID, pid)
	}
	t.Logf("the unpin came %v after node A died", time.Since(died))
}

// TestHideOfDyingNodeRescued: node A hides a pinned product (the store unpins it) and
// dies before its product event and unpin are out. The viewer on node B gets the
// unpin and the hide's own product event (hidden: the comparison covers a product's
// fields), and nothing else of the hidden product before or after them.
func TestHideOfDyingNodeRescued(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	a, b, killAWhenFrozen := startDyingPair(t, "lc-hidedie", publishing("product", `"hidden":true`))
	creator := mint(t, auth.RoleCreator, "alice")
	_, pid, wb := pinnedStream(t, b, b, creator)
	waitCompared(t, b)

	sendAside("PATCH", a+"/api/products/"+pid, creator, map[string]bool{"hidden": true})
	died := killAWhenFrozen("node A never published the hide's product event")
	hid := false
	leaked := func(f frame) {
		if (f.Type == "product" || f.Type == "pin") && bytes.Contains(f.Product, []byte(pid)) {
			if f.Type == "product" && bytes.Contains(f.Product, []byte(`"hidden":true`)) {
				hid = true // the hide's own event
				return
			}
			t.Errorf("viewer on B got a %s event of the hidden product: %s", f.Type, f.Product)
		}
	}
	f := nextOf(t, wb, died, pinRescueWithin, "viewer on B never got the hidden product unpinned", leaked, "unpin", "pin")
	if f.Type != "unpin" || f.ProductID != pid {
		t.Fatalf("got %s of %q, want unpin of %s", f.Type, f.ProductID, pid)
	}
	t.Logf("the unpin came %v after node A died", time.Since(died))
	wb.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	for {
		_, raw, err := wb.ReadMessage()
		if err != nil {
			break // nothing more within the time
		}
		var f frame
		if json.Unmarshal(raw, &f) == nil {
			leaked(f)
		}
	}
	if !hid {
		t.Error("viewer on B never got the hide's product event")
	}
}

// TestPinOfDyingNodeRescued: node A pins a product and dies before the pin event is
// out. The viewer on node B gets the pin.
func TestPinOfDyingNodeRescued(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	a, b, killAWhenFrozen := startDyingPair(t, "lc-pindie", publishing("pin"))
	creator := mint(t, auth.RoleCreator, "alice")
	sid, pid := newStreamProduct(t, b, creator, "pins", 100)
	wb := dialWS(t, b, sid, "")
	next(t, wb, "snapshot")
	waitCompared(t, b)

	sendAside("POST", a+"/api/streams/"+sid+"/pins", creator, map[string]string{"product_id": pid})
	died := killAWhenFrozen("node A never published the pin")
	f := nextOf(t, wb, died, pinRescueWithin, "viewer on B never got the pin", nil, "pin", "unpin")
	if f.Type != "pin" || !bytes.Contains(f.Product, []byte(pid)) {
		t.Fatalf("got %s %s, want the pin of %s", f.Type, f.Product, pid)
	}
	t.Logf("the pin came %v after node A died", time.Since(died))
}

// TestSaleCreatedOfDyingNodeRescued: node A creates a sale and dies before the sale
// event is out. The viewer on node B gets the sale (active).
func TestSaleCreatedOfDyingNodeRescued(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	a, b, killAWhenFrozen := startDyingPair(t, "lc-newsaledie", publishing("sale", `"status":"active"`))
	creator := mint(t, auth.RoleCreator, "alice")
	sid, pid := newStreamProduct(t, b, creator, "sales", 100)
	wb := dialWS(t, b, sid, "")
	next(t, wb, "snapshot")
	waitCompared(t, b)

	sendAside("POST", a+"/api/streams/"+sid+"/sales", creator, map[string]any{"product_id": pid, "price_cents": 4900, "quantity": 10, "duration_s": 120})
	died := killAWhenFrozen("node A never published the new sale")
	f := nextOf(t, wb, died, pinRescueWithin, "viewer on B never got the new sale", nil, "sale")
	if f.Sale.Status != "active" || f.Sale.ID == "" {
		t.Fatalf("sale event %+v, want the new sale active", f.Sale)
	}
	t.Logf("the sale came %v after node A died", time.Since(died))
}

// TestStreamEndOfDyingNodeRescued: node A ends a stream with an active sale (the store
// ends both) and dies before the sale's ended event is out (nor the stream's). The
// viewer on node B gets the sale ended, then the stream ended, then a normal close.
func TestStreamEndOfDyingNodeRescued(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	a, b, killAWhenFrozen := startDyingPair(t, "lc-enddie", publishing("sale", `"status":"ended"`))
	creator := mint(t, auth.RoleCreator, "alice")
	st, sale := newStockSale(t, b, creator, 100, 50)
	wb := dialWS(t, b, st.ID, "")
	next(t, wb, "snapshot")
	waitCompared(t, b)

	sendAside("POST", a+"/api/streams/"+st.ID+"/end", creator, nil)
	died := killAWhenFrozen("node A never published the sale's end")
	f := nextOf(t, wb, died, pinRescueWithin, "viewer on B never got the sale ended", nil, "sale", "stream")
	if f.Type != "sale" || f.Sale.ID != sale.ID || f.Sale.Status != "ended" {
		t.Fatalf("got %s (sale %+v), want the sale %s ended first", f.Type, f.Sale, sale.ID)
	}
	f = nextOf(t, wb, died, pinRescueWithin, "viewer on B never got the stream ended", nil, "stream")
	if !bytes.Contains(f.Stream, []byte(`"status":"ended"`)) {
		t.Fatalf("stream event %s, want it ended", f.Stream)
	}
	t.Logf("the stream's end came %v after node A died", time.Since(died))
	wb.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		_, _, err := wb.ReadMessage()
		if err == nil {
			continue
		}
		if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
			t.Fatalf("after the stream event: %v, want a normal close (1000)", err)
		}
		break
	}
}
