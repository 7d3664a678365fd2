package web

import (
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
)

// commerceRoutes: products, pins, flash sales, cart, checkout and orders (API.md).
func (s *Server) commerceRoutes(mux *http.ServeMux) {
	if s.deps.Commerce == nil {
		s.deps.Commerce = cart.NewService(s.deps.Store, s.deps.Events, cart.ServiceConfig{}, s.deps.Now, s.log)
	}
	s.commerce = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livecart_commerce_total",
		Help: "Holds and checkouts by outcome (created, replayed, or the API error code).",
	}, []string{"op", "outcome"})
	s.deps.Registry.MustRegister(s.commerce, newUnitCollector(s.deps.Commerce, s.log))
	mux.HandleFunc("POST /api/streams/{sid}/products", s.createProduct)
	mux.HandleFunc("GET /api/streams/{sid}/products", s.listProducts)
	mux.HandleFunc("GET /api/products/{pid}", s.getProduct)
	mux.HandleFunc("PATCH /api/products/{pid}", s.patchProduct)
	mux.HandleFunc("GET /api/streams/{sid}/pins", s.listPins)
	mux.HandleFunc("POST /api/streams/{sid}/pins", s.pinProduct)
	mux.HandleFunc("DELETE /api/streams/{sid}/pins/{pid}", s.unpinProduct)
	mux.HandleFunc("POST /api/streams/{sid}/sales", s.createSale)
	mux.HandleFunc("GET /api/streams/{sid}/sales", s.listSales)
	mux.HandleFunc("GET /api/sales/{id}", s.getSale)
	mux.HandleFunc("POST /api/sales/{id}/stop", s.stopSale)
	mux.HandleFunc("POST /api/cart/items", s.addToCart)
	mux.HandleFunc("GET /api/cart", s.getCart)
	mux.HandleFunc("DELETE /api/cart/items/{id}", s.removeFromCart)
	mux.HandleFunc("POST /api/checkout", s.checkout)
	mux.HandleFunc("GET /api/orders", s.listOrders)
	mux.HandleFunc("GET /api/streams/{sid}/orders", s.listStreamOrders)
}

// countOutcome records the outcome of a hold or checkout for /metrics.
func (s *Server) countOutcome(op, outcome string, err error) {
	if err != nil {
		outcome = toAPIError(err).Code
	}
	s.commerce.WithLabelValues(op, outcome).Inc()
}

// countSuccess records a created hold, or a created or replayed checkout: as
// countOutcome, through a counter looked up once (every sale request's outcome; the
// label lookup hashes both values each time). The series appears at the first count,
// as with countOutcome.
func (s *Server) countSuccess(c *lazyCounter, op, outcome string) {
	m := c.c.Load()
	if m == nil {
		m = &counter{s.commerce.WithLabelValues(op, outcome)}
		c.c.Store(m) // a racing lookup stores the same counter
	}
	m.Inc()
}

// lazyCounter is a counter of Server.commerce found at its first use.
type lazyCounter struct{ c atomic.Pointer[counter] }

type counter struct{ prometheus.Counter }

func actor(id auth.Identity) cart.Actor { return cart.Actor{ID: id.UserID, Role: string(id.Role)} }

// pinnedBody is the answer of the pin endpoints.
type pinnedBody struct {
	Pinned []cart.Product `json:"pinned"`
}

func (s *Server) createProduct(w http.ResponseWriter, r *http.Request) {
	id, st, err := s.authorizeStream(r, canManage)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var in cart.NewProduct
	if err := decodeJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	p, err := s.deps.Commerce.CreateProduct(r.Context(), actor(id), st.ID, in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/products/"+p.ID)
	writeJSON(w, http.StatusCreated, p)
}

func (s *Server) listProducts(w http.ResponseWriter, r *http.Request) {
	st, err := s.publicStream(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list, err := s.deps.Commerce.ListProducts(r.Context(), st.ID, canModerate(identity(r), st))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// loadProduct returns the product named by the path and its stream; a hidden product is
// not_found for those who may not see it.
func (s *Server) loadProduct(r *http.Request) (cart.Product, cart.Stream, error) {
	pid, err := pathID(r, "pid")
	if err != nil {
		return cart.Product{}, cart.Stream{}, err
	}
	p, err := s.deps.Commerce.GetProduct(r.Context(), pid)
	if err != nil {
		return p, cart.Stream{}, err
	}
	st, err := s.loadStream(r.Context(), p.StreamID)
	if err == nil && p.Hidden && !canModerate(identity(r), st) {
		err = apiError(http.StatusNotFound, "not_found", "no such product")
	}
	return p, st, err
}

func (s *Server) getProduct(w http.ResponseWriter, r *http.Request) {
	p, _, err := s.loadProduct(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) patchProduct(w http.ResponseWriter, r *http.Request) {
	id, err := requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p, st, err := s.loadProduct(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !canModerate(id, st) {
		s.fail(w, r, errForbidden("only the stream's owner, moderators and admins may change products"))
		return
	}
	var in struct {
		Hidden *bool `json:"hidden"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.Hidden == nil {
		s.fail(w, r, apiError(http.StatusBadRequest, "bad_request", "hidden (true or false) is required"))
		return
	}
	if p, err = s.deps.Commerce.SetHidden(r.Context(), actor(id), p.ID, *in.Hidden); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) listPins(w http.ResponseWriter, r *http.Request) {
	st, err := s.publicStream(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	pinned, err := s.deps.Commerce.ListPinned(r.Context(), st.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, pinnedBody{Pinned: pinned})
}

func (s *Server) pinProduct(w http.ResponseWriter, r *http.Request) {
	id, st, err := s.authorizeStream(r, canManage)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var in struct {
		ProductID string `json:"product_id"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.ProductID == "" {
		s.fail(w, r, apiError(http.StatusBadRequest, "bad_request", "product_id is required"))
		return
	}
	in.ProductID = canonicalID(in.ProductID)
	pinned, err := s.deps.Commerce.Pin(r.Context(), actor(id), st.ID, in.ProductID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, pinnedBody{Pinned: pinned})
}

// unpinProduct checks in the API's order: 401, 404 for the stream and for the product
// (not a UUID, unknown, of another stream, or hidden from the caller), 403.
func (s *Server) unpinProduct(w http.ResponseWriter, r *http.Request) {
	id, err := requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.publicStream(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	pid, err := pathID(r, "pid")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p, err := s.deps.Commerce.GetProduct(r.Context(), pid)
	if err == nil && (p.StreamID != st.ID || (p.Hidden && !canModerate(id, st))) {
		err = apiError(http.StatusNotFound, "not_found", "no such product in this stream")
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !canModerate(id, st) {
		s.fail(w, r, errForbidden("only the stream's owner, moderators and admins may unpin"))
		return
	}
	pinned, err := s.deps.Commerce.Unpin(r.Context(), actor(id), st.ID, pid)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, pinnedBody{Pinned: pinned})
}

func (s *Server) createSale(w http.ResponseWriter, r *http.Request) {
	id, st, err := s.authorizeStream(r, canManage)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var in cart.NewSale
	if err := decodeJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	in.ProductID = canonicalID(in.ProductID)
	sale, err := s.deps.Commerce.CreateSale(r.Context(), actor(id), st.ID, in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/sales/"+sale.ID)
	writeJSON(w, http.StatusCreated, sale)
}

func (s *Server) listSales(w http.ResponseWriter, r *http.Request) {
	st, err := s.publicStream(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list, err := s.deps.Commerce.ListSales(r.Context(), st.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// loadSale returns the sale named by the path and its stream.
func (s *Server) loadSale(r *http.Request) (cart.Sale, cart.Stream, error) {
	said, err := pathID(r, "id")
	if err != nil {
		return cart.Sale{}, cart.Stream{}, err
	}
	sale, err := s.deps.Commerce.GetSale(r.Context(), said)
	if err != nil {
		return sale, cart.Stream{}, err
	}
	st, err := s.loadStream(r.Context(), sale.StreamID)
	return sale, st, err
}

func (s *Server) getSale(w http.ResponseWriter, r *http.Request) {
	sale, _, err := s.loadSale(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sale)
}

func (s *Server) stopSale(w http.ResponseWriter, r *http.Request) {
	id, err := requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sale, st, err := s.loadSale(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !canModerate(id, st) {
		s.fail(w, r, errForbidden("only the stream's owner, moderators and admins may stop a sale"))
		return
	}
	if err := decodeNoFields(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	if sale, err = s.deps.Commerce.StopSale(r.Context(), actor(id), sale.ID); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sale)
}

func (s *Server) addToCart(w http.ResponseWriter, r *http.Request) {
	id, err := requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	in, err := decodeNewItem(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	in.ProductID, in.SaleID = canonicalID(in.ProductID), canonicalID(in.SaleID)
	if err := s.allowUser(w, s.holdsPerUser, id.UserID); err != nil {
		s.fail(w, r, err)
		return
	}
	h, err := s.deps.Commerce.AddToCart(r.Context(), id.UserID, in)
	if err != nil {
		s.countOutcome("hold", "", err)
		s.fail(w, r, err)
		return
	}
	s.countSuccess(&s.holdCreated, "hold", "created")
	writeHold(w, http.StatusCreated, &h)
}

// decodeNewItem is decodeJSON of a hold's body. Its value stays off the heap: the
// usual compact body is decoded by hand (NewItem.DecodeFastJSON), anything else into a
// copy through encoding/json (decodeJSON of &in would put every hold's in on the heap).
func decodeNewItem(w http.ResponseWriter, r *http.Request) (cart.NewItem, error) {
	bp, raw, trimmed, err := readBody(w, r, false)
	defer putBody(bp)
	if err != nil {
		return cart.NewItem{}, err
	}
	var in cart.NewItem
	if in.DecodeFastJSON(trimmed) {
		return in, nil
	}
	p := new(cart.NewItem) // encoding/json starts from scratch
	err = decodeRaw(raw, p)
	return *p, err
}

// decodeCheckoutInput is decodeJSONOrEmpty of a checkout's body, without a heap copy
// of the value when the body is empty (the usual checkout of the whole cart).
func decodeCheckoutInput(w http.ResponseWriter, r *http.Request) (cart.CheckoutInput, error) {
	bp, raw, trimmed, err := readBody(w, r, true)
	defer putBody(bp)
	if err != nil || len(trimmed) == 0 {
		return cart.CheckoutInput{}, err
	}
	p := new(cart.CheckoutInput)
	err = decodeRaw(raw, p)
	return *p, err
}

func (s *Server) getCart(w http.ResponseWriter, r *http.Request) {
	id, err := requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.deps.Commerce.Cart(r.Context(), id.UserID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) removeFromCart(w http.ResponseWriter, r *http.Request) {
	id, err := requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hid, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.deps.Commerce.RemoveFromCart(r.Context(), id.UserID, hid); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) checkout(w http.ResponseWriter, r *http.Request) {
	id, err := requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	in, err := decodeCheckoutInput(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	in.StreamID = canonicalID(in.StreamID)
	for i, h := range in.HoldIDs {
		in.HoldIDs[i] = canonicalID(h)
	}
	if err := s.allowUser(w, s.checkoutsPerUser, id.UserID); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.StreamID != "" {
		// A stream_id that names no stream is 404 (API.md: an id in a body that names
		// nothing), not the empty cart's 409 the store would answer.
		if _, err := s.loadStream(r.Context(), in.StreamID); err != nil {
			s.countOutcome("checkout", "", err)
			s.fail(w, r, err)
			return
		}
	}
	o, created, err := s.deps.Commerce.Checkout(r.Context(), id.UserID, r.Header.Get("Idempotency-Key"), in)
	if err != nil {
		s.countOutcome("checkout", "", err)
		s.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		s.countSuccess(&s.checkoutCreated, "checkout", "created")
	} else {
		s.countSuccess(&s.checkoutReplayed, "checkout", "replayed")
	}
	writeOrder(w, status, &o)
}

func (s *Server) listOrders(w http.ResponseWriter, r *http.Request) {
	id, err := requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list, err := s.deps.Commerce.ListOrders(r.Context(), id.UserID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) listStreamOrders(w http.ResponseWriter, r *http.Request) {
	_, st, err := s.authorizeStream(r, canManage)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list, err := s.deps.Commerce.ListStreamOrders(r.Context(), st.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}
