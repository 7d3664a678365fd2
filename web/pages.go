package web

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/pages"
)

// guestTokenTTL is how long a guest's viewer token lasts: one evening of shopping.
const guestTokenTTL = 12 * time.Hour

// maxGuestName bounds a guest's display name, in characters.
const maxGuestName = 40

// pageRoutes serves the browser pages (stream list, watch, studio, moderate), their
// assets under /static/, and POST /api/guest when guest tokens are on.
func (s *Server) pageRoutes(mux *http.ServeMux) {
	site, err := pages.New(pages.Options{GuestTokens: s.deps.Options.GuestTokens})
	if err != nil {
		panic(err) // the embedded files are part of the binary: a build mistake
	}
	mux.Handle("GET /{$}", site.Page(pages.PageIndex))
	mux.Handle("GET /watch/{sid}", site.Page(pages.PageWatch))
	mux.Handle("GET /studio/{sid}", site.Page(pages.PageStudio))
	mux.Handle("GET /moderate/{sid}", site.Page(pages.PageModerate))
	mux.Handle("GET /static/", site.Static())
	mux.HandleFunc("POST /api/guest", s.createGuest)
}

type guestRequest struct {
	Name string `json:"name"`
}

type guestResponse struct {
	Token     string    `json:"token"`
	UserID    string    `json:"user_id"`
	Name      string    `json:"name"`
	ExpiresAt time.Time `json:"expires_at"`
}

// createGuest mints a viewer token for a display name: POST /api/guest {name} →
// 201 {token, user_id, name, expires_at}. 404 unless guest tokens are on.
func (s *Server) createGuest(w http.ResponseWriter, r *http.Request) {
	if !s.deps.Options.GuestTokens {
		s.fail(w, r, apiError(http.StatusNotFound, "not_found", "guest sign-in is off"))
		return
	}
	var req guestRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	name := strings.Join(strings.Fields(req.Name), " ")
	if name == "" || utf8.RuneCountInString(name) > maxGuestName || !utf8.ValidString(name) {
		s.fail(w, r, apiError(http.StatusBadRequest, "bad_request", "name must be 1..40 characters"))
		return
	}
	if cart.HasControl(name, false) {
		s.fail(w, r, apiError(http.StatusBadRequest, "bad_request", "name must not contain control characters"))
		return
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		s.fail(w, r, err)
		return
	}
	id := auth.Identity{UserID: "guest-" + hex.EncodeToString(b[:]), Name: name, Role: auth.RoleViewer}
	token, err := s.deps.Auth.Mint(id, guestTokenTTL)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, guestResponse{
		Token: token, UserID: id.UserID, Name: name, ExpiresAt: s.deps.Now().Add(guestTokenTTL).UTC(),
	})
}
