package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/livecart/livecart/web/auth"
)

// recorder keeps every frame a viewer gets until its connection closes, and the close.
type recorder struct {
	mu     sync.Mutex
	frames []frame
	closed error
	done   chan struct{}
}

func record(c *websocket.Conn) *recorder {
	r := &recorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			_, raw, err := c.ReadMessage()
			if err != nil {
				r.mu.Lock()
				r.closed = err
				r.mu.Unlock()
				return
			}
			var f frame
			if json.Unmarshal(raw, &f) == nil {
				r.mu.Lock()
				r.frames = append(r.frames, f)
				r.mu.Unlock()
			}
		}
	}()
	return r
}

// checkNoRepeat fails the test for a frame that repeats a state the viewer already
// had (a pin of a pinned product, an unpin of an unpinned one, a sale status not
// further on than the one delivered, a second stream event), or a seq that is not the
// one before plus one. It returns the pinned products after the last frame.
func checkNoRepeat(t *testing.T, who string, frames []frame) map[string]bool {
	t.Helper()
	pinned := map[string]bool{}
	sales := map[string]int{}
	rank := map[string]int{"scheduled": 1, "active": 2, "ended": 3}
	var last int64
	streams := 0
	for _, f := range frames {
		if f.Seq != 0 {
			if last != 0 && f.Seq != last+1 {
				t.Errorf("%s: seq %d after %d (%s), want +1", who, f.Seq, last, f.Type)
			}
			last = f.Seq
		}
		switch f.Type {
		case "pin":
			var p struct{ ID string }
			json.Unmarshal(f.Product, &p)
			if pinned[p.ID] {
				t.Errorf("%s: seq %d pins %s, already pinned", who, f.Seq, p.ID)
			}
			pinned[p.ID] = true
		case "unpin":
			if !pinned[f.ProductID] {
				t.Errorf("%s: seq %d unpins %s, not pinned", who, f.Seq, f.ProductID)
			}
			delete(pinned, f.ProductID)
		case "sale":
			if r := rank[f.Sale.Status]; r <= sales[f.Sale.ID] {
				t.Errorf("%s: seq %d sale %s %s after rank %d", who, f.Seq, f.Sale.ID, f.Sale.Status, sales[f.Sale.ID])
			} else {
				sales[f.Sale.ID] = r
			}
		case "stream":
			if streams++; streams > 1 {
				t.Errorf("%s: seq %d is stream event %d, want one", who, f.Seq, streams)
			}
		}
	}
	return pinned
}

// TestHealthyClusterRescuesNothing: two nodes on one Redis, nobody dies. Products are
// created, pinned (the oldest unpinned past the limit) and get sales that are stopped,
// one request at a time per stream through alternating nodes, on several streams at
// once, then each stream ends. The node-death comparison runs all along (a viewer of
// each stream on each node). No viewer gets an event repeating a state it already had
// (a rescue publishing an event still on its way, then the event itself), every seq
// is the one before plus one, each gets one stream event and a normal close, and the
// pins the viewers end with are the store's.
func TestHealthyClusterRescuesNothing(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	prefix := fmt.Sprintf("lc-healthy-%s", uuid.NewString()[:8])
	cleanupPrefix(t, prefix)
	nodes := []string{startNode(t, "node-a", prefix), startNode(t, "node-b", prefix)}
	creator := mint(t, auth.RoleCreator, "alice")
	const streams, rounds = 3, 25

	type viewed struct {
		sid  string
		recs []*recorder
	}
	all := make([]viewed, streams)
	for i := range all {
		var st struct{ ID string }
		call(t, "POST", nodes[0]+"/api/streams", creator, map[string]string{"title": "healthy"}, 201, &st)
		all[i].sid = st.ID
		for _, n := range nodes {
			c := dialWS(t, n, st.ID, "")
			next(t, c, "snapshot")
			all[i].recs = append(all[i].recs, record(c))
		}
	}
	time.Sleep(2500 * time.Millisecond) // each stream compared (its baseline) by one node or the other

	var wg sync.WaitGroup
	storePins := make([]map[string]bool, streams)
	for i := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sid := all[i].sid
			var pins []string
			var sales []string
			for r := range rounds {
				n := nodes[r%2]
				var p, sale struct{ ID string }
				call(t, "POST", n+"/api/streams/"+sid+"/products", creator, map[string]any{
					"sku": fmt.Sprintf("SKU-%d", r), "title": "Sneaker", "price_cents": 9900, "currency": "EUR", "stock": 100}, 201, &p)
				if len(pins) == 5 {
					call(t, "DELETE", nodes[(r+1)%2]+"/api/streams/"+sid+"/pins/"+pins[0], creator, nil, 200, nil)
					pins = pins[1:]
				}
				call(t, "POST", n+"/api/streams/"+sid+"/pins", creator, map[string]string{"product_id": p.ID}, 200, nil)
				pins = append(pins, p.ID)
				call(t, "POST", nodes[(r+1)%2]+"/api/streams/"+sid+"/sales", creator, map[string]any{
					"product_id": p.ID, "price_cents": 4900, "quantity": 10, "duration_s": 120}, 201, &sale)
				sales = append(sales, sale.ID)
				if len(sales) > 3 {
					call(t, "POST", n+"/api/sales/"+sales[0]+"/stop", creator, nil, 200, nil)
					sales = sales[1:]
				}
				time.Sleep(20 * time.Millisecond)
			}
			var list struct{ Pinned []struct{ ID string } }
			call(t, "GET", nodes[0]+"/api/streams/"+sid+"/pins", creator, nil, 200, &list)
			storePins[i] = map[string]bool{}
			for _, p := range list.Pinned {
				storePins[i][p.ID] = true
			}
		}()
	}
	wg.Wait()
	time.Sleep(2500 * time.Millisecond) // any rescue is out
	for i, v := range all {
		call(t, "POST", nodes[i%2]+"/api/streams/"+v.sid+"/end", creator, nil, 200, nil)
	}
	for i, v := range all {
		for j, rec := range v.recs {
			select {
			case <-rec.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("stream %d: viewer on node %d not closed within 10 s of the end", i, j)
			}
			who := fmt.Sprintf("stream %d viewer on node %d", i, j)
			if !websocket.IsCloseError(rec.closed, websocket.CloseNormalClosure) {
				t.Errorf("%s: closed with %v, want 1000", who, rec.closed)
			}
			var before []frame
			for _, f := range rec.frames {
				if f.Type == "stream" {
					break
				}
				before = append(before, f)
			}
			pinned := checkNoRepeat(t, who, before)
			checkNoRepeat(t, who, rec.frames)
			if len(pinned) != len(storePins[i]) {
				t.Errorf("%s: ends with %d pinned, the store %d", who, len(pinned), len(storePins[i]))
			}
			for id := range storePins[i] {
				if !pinned[id] {
					t.Errorf("%s: %s pinned in the store, not for the viewer", who, id)
				}
			}
		}
	}
}

// newDelayProxy is a cmdProxy that holds the first command slow picks for d, and
// the commands after it on that connection behind it, then forwards them: a node's
// Redis call that takes d (a network hiccup, a pause), the node staying healthy.
func newDelayProxy(t *testing.T, target string, d time.Duration, slow func(cmd [][]byte) bool) string {
	t.Helper()
	var once sync.Once
	return newCmdProxy(t, target, func(cmd [][]byte) bool {
		if slow(cmd) {
			once.Do(func() { time.Sleep(d) })
		}
		return true
	}).addr
}

// TestSlowPublicationNotRepeated: node A commits a change and its publication takes
// 2.5 s (A stays healthy; its stream's events wait in its queue). Node B's comparison
// finds the change undelivered after about a second and publishes it (the rescue of
// a node that died). When A's own event gets out after that, it must not reach the
// viewers a second time: a pin of a pinned product, a sale created twice, a second
// stream end.
func TestSlowPublicationNotRepeated(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	for _, tc := range []struct {
		name  string
		slow  func(cmd [][]byte) bool
		event string // the event type the viewer must get once
	}{
		{"pin", publishing("pin"), "pin"},
		{"new sale", publishing("sale", `"status":"active"`), "sale"},
		{"stream end", publishing("stream", `"status":"ended"`), "stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := fmt.Sprintf("lc-slowpub-%s", uuid.NewString()[:8])
			cleanupPrefix(t, prefix)
			proxy := newDelayProxy(t, "127.0.0.1:6379", 2500*time.Millisecond, tc.slow)
			cfg := redisConfig(t, "redis://"+proxy+"/0", prefix)
			cfg.NodeID = "node-a"
			a := "http://" + startMain(t, "node a", cfg).Addr()
			b := startNode(t, "node-b", prefix)
			creator := mint(t, auth.RoleCreator, "alice")
			var st, p struct{ ID string }
			call(t, "POST", b+"/api/streams", creator, map[string]string{"title": "slow"}, 201, &st)
			call(t, "POST", b+"/api/streams/"+st.ID+"/products", creator, map[string]any{
				"sku": "SKU-1", "title": "Sneaker", "price_cents": 9900, "currency": "EUR", "stock": 100}, 201, &p)
			wb := dialWS(t, b, st.ID, "")
			snap := next(t, wb, "snapshot")
			rec := record(wb)
			waitCompared(t, b)

			switch tc.name {
			case "pin":
				sendAside("POST", a+"/api/streams/"+st.ID+"/pins", creator, map[string]string{"product_id": p.ID})
			case "new sale":
				sendAside("POST", a+"/api/streams/"+st.ID+"/sales", creator, map[string]any{"product_id": p.ID, "price_cents": 4900, "quantity": 10, "duration_s": 120})
			case "stream end":
				sendAside("POST", a+"/api/streams/"+st.ID+"/end", creator, nil)
			}
			time.Sleep(4 * time.Second) // the rescue, then A's own event
			rec.mu.Lock()
			frames := append([]frame(nil), rec.frames...)
			rec.mu.Unlock()
			if tc.name == "stream end" {
				// B's viewer is closed at the first stream event; the history holds any
				// later one.
				url := strings.Replace(b, "http://", "ws://", 1) + "/ws/" + st.ID + "?since=" + strconv.FormatInt(snap.Seq, 10)
				c, _, err := websocket.DefaultDialer.Dial(url, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				frames = nil
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				for {
					_, raw, err := c.ReadMessage()
					if err != nil {
						break
					}
					var f frame
					json.Unmarshal(raw, &f)
					frames = append(frames, f)
				}
			}
			var seqs []int64
			for _, f := range frames {
				if f.Type == tc.event {
					seqs = append(seqs, f.Seq)
				}
			}
			if len(seqs) != 1 {
				t.Errorf("the viewer got %d %s events (seqs %v), want 1", len(seqs), tc.event, seqs)
			}
			checkNoRepeat(t, "viewer on B", frames)
		})
	}
}
