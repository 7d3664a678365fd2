package web

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/live"
)

// hiddenFrame is a live frame with the fields that may name a product.
type hiddenFrame struct {
	Type      string        `json:"type"`
	Product   *cart.Product `json:"product"`
	ProductID string        `json:"product_id"`
	Sale      *cart.Sale    `json:"sale"`
	raw       string
}

func readHiddenFrame(t *testing.T, ws *websocket.Conn) hiddenFrame {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, raw, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	var f hiddenFrame
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("frame %s: %v", raw, err)
	}
	f.raw = string(raw)
	return f
}

// TestLiveHiddenProductNotLeaked: a pinned product with an active sale is hidden; its
// viewers get the `product` (hidden) and `unpin` events, and then nothing carrying the
// product while it stays hidden: the sale's stop gives its units back to the product
// (its `product` event is not sent; the `sale` ended event is: the sale is public). A
// new viewer's snapshot neither pins it nor names its details. Unhiding sends its
// current state.
func TestLiveHiddenProductNotLeaked(t *testing.T) {
	e := newTestEnv(t, func(d *Deps) {
		hub := live.NewHub(live.Config{Bus: live.NewMemoryBus(nil, 0), Presence: live.NewMemoryPresence(nil),
			Stock: d.Store, ViewersInterval: time.Hour})
		t.Cleanup(func() { hub.Close() })
		d.Live, d.Events, d.Presence = hub, hub, hub
	})
	sh := e.shop()
	owner := e.token(auth.RoleCreator, "alice")
	resp, raw := e.do("POST", "/api/streams/"+sh.st.ID+"/pins", owner, map[string]string{"product_id": sh.product.ID})
	e.expect(resp, raw, http.StatusOK, "", nil)

	ws := e.dialWS(sh.st.ID, "")
	if f := readHiddenFrame(t, ws); f.Type != "snapshot" {
		t.Fatalf("first frame %s, want the snapshot", f.raw)
	}
	resp, raw = e.do("PATCH", "/api/products/"+sh.product.ID, owner, map[string]bool{"hidden": true})
	e.expect(resp, raw, http.StatusOK, "", nil)
	if f := readHiddenFrame(t, ws); f.Type != "product" || f.Product == nil || !f.Product.Hidden {
		t.Fatalf("got %s, want the product (hidden) event", f.raw)
	}
	if f := readHiddenFrame(t, ws); f.Type != "unpin" || f.ProductID != sh.product.ID {
		t.Fatalf("got %s, want unpin", f.raw)
	}

	resp, raw = e.do("POST", "/api/sales/"+sh.sale.ID+"/stop", owner, nil)
	e.expect(resp, raw, http.StatusOK, "", nil)
	// A product event of a stock-only change may be held back for the coalesce interval
	// (100 ms): the fence goes out well after it.
	time.Sleep(500 * time.Millisecond)
	resp, raw = e.do("POST", "/api/streams/"+sh.st.ID+"/announce", owner, map[string]string{"text": "fence"})
	e.expect(resp, raw, http.StatusNoContent, "", nil)
	sawSale := false
	for {
		f := readHiddenFrame(t, ws)
		if f.Type == live.EventAnnounce {
			break
		}
		switch {
		case f.Type == "sale" && f.Sale != nil && f.Sale.Status == cart.SaleEnded:
			sawSale = true
		case f.Type == "product" || f.Type == "pin" || strings.Contains(f.raw, "Mug"):
			t.Fatalf("hidden product leaked to an anonymous viewer: %s", f.raw)
		}
	}
	if !sawSale {
		t.Fatal("no sale ended event before the fence: the sale itself is public")
	}

	ws2 := e.dialWS(sh.st.ID, "")
	snap := readHiddenFrame(t, ws2)
	var s struct {
		Pinned []cart.Product `json:"pinned"`
		Sales  []cart.Sale    `json:"sales"`
	}
	if err := json.Unmarshal([]byte(snap.raw), &s); err != nil || snap.Type != "snapshot" {
		t.Fatalf("snapshot %s: %v", snap.raw, err)
	}
	if len(s.Pinned) != 0 || strings.Contains(snap.raw, "Mug") || strings.Contains(snap.raw, "MUG-1") {
		t.Fatalf("a new viewer's snapshot shows the hidden product: %s", snap.raw)
	}
	if len(s.Sales) != 1 || s.Sales[0].Status != cart.SaleEnded {
		t.Fatalf("snapshot sales %+v, want the ended sale", s.Sales)
	}

	resp, raw = e.do("PATCH", "/api/products/"+sh.product.ID, owner, map[string]bool{"hidden": false})
	e.expect(resp, raw, http.StatusOK, "", nil)
	f := readHiddenFrame(t, ws)
	if f.Type != "product" || f.Product == nil || f.Product.Hidden || f.Product.Stock != 10 {
		t.Fatalf("got %s, want the product shown again with its 10 units", f.raw)
	}
}

// TestHiddenProductRefusalMessage: on either store, holding a hidden product (directly or
// through its sale) or selling it again is not_found with a readable message. The Redis
// scripts' "product not found" came out as "product not found not found".
func TestHiddenProductRefusalMessage(t *testing.T) {
	for _, store := range []string{"bolt", "redis"} {
		t.Run(store, func(t *testing.T) {
			var tweaks []func(*Deps)
			if store == "redis" {
				tweaks = append(tweaks, redisStore(t))
			}
			e := newTestEnv(t, tweaks...)
			sh := e.shop()
			owner, bob := e.token(auth.RoleCreator, "alice"), e.token(auth.RoleViewer, "bob")
			resp, raw := e.do("PATCH", "/api/products/"+sh.product.ID, owner, map[string]bool{"hidden": true})
			e.expect(resp, raw, http.StatusOK, "", nil)
			for _, c := range []struct {
				path, token string
				body        map[string]any
			}{
				{"/api/cart/items", bob, map[string]any{"product_id": sh.product.ID, "quantity": 1}},
				{"/api/cart/items", bob, map[string]any{"sale_id": sh.sale.ID, "quantity": 1}},
				{"/api/streams/" + sh.st.ID + "/sales", owner, map[string]any{"product_id": sh.product.ID, "price_cents": 1, "quantity": 1, "duration_s": 60}},
			} {
				resp, raw := e.do("POST", c.path, c.token, c.body)
				e.expect(resp, raw, http.StatusNotFound, "not_found", nil)
				if strings.Contains(string(raw), "not found not found") {
					t.Errorf("POST %s %v: message repeats itself: %s", c.path, c.body, raw)
				}
			}
		})
	}
}
