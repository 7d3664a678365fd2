package web

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
)

// MaxTitleLen bounds a stream title (code points).
const MaxTitleLen = 200

// StreamView is the API's Stream: the stored stream plus viewers and URLs.
type StreamView struct {
	ID        string            `json:"id"`
	Title     string            `json:"title"`
	CreatorID string            `json:"creator_id"`
	Status    cart.StreamStatus `json:"status"`
	Viewers   int               `json:"viewers"`
	StreamKey string            `json:"stream_key,omitempty"`
	WHIPURL   string            `json:"whip_url"`
	WHEPURL   string            `json:"whep_url"`
	WSURL     string            `json:"ws_url"`
	CreatedAt time.Time         `json:"created_at"`
	StartedAt *time.Time        `json:"started_at"`
	EndedAt   *time.Time        `json:"ended_at"`
}

func (s *Server) streamRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/streams", s.createStream)
	mux.HandleFunc("GET /api/streams", s.listStreams)
	mux.HandleFunc("GET /api/streams/{sid}", s.getStream)
	mux.HandleFunc("POST /api/streams/{sid}/end", s.endStream)
	mux.HandleFunc("GET /api/streams/{sid}/audit", s.listAudit)
}

// streamView renders st for the caller: the stream key only for its owner and admins.
func (s *Server) streamView(ctx context.Context, st cart.Stream, viewer auth.Identity) StreamView {
	v := StreamView{
		ID: st.ID, Title: st.Title, CreatorID: st.CreatorID, Status: st.Status,
		WHIPURL: s.url("/whip/"+st.ID, false), WHEPURL: s.url("/whep/"+st.ID, false),
		WSURL:     s.url("/ws/"+st.ID, true),
		CreatedAt: st.CreatedAt, StartedAt: st.StartedAt, EndedAt: st.EndedAt,
	}
	if canManage(viewer, st) {
		v.StreamKey = st.StreamKey
	}
	if s.deps.Presence != nil {
		v.Viewers = s.deps.Presence.Viewers(ctx, st.ID)
	}
	return v
}

// url makes path absolute when PublicURL is set (ws:// or wss:// for websockets).
func (s *Server) url(path string, ws bool) string {
	base := strings.TrimRight(s.deps.Options.PublicURL, "/")
	if base == "" {
		return path
	}
	if ws {
		if rest, ok := strings.CutPrefix(base, "https://"); ok {
			base = "wss://" + rest
		} else if rest, ok := strings.CutPrefix(base, "http://"); ok {
			base = "ws://" + rest
		}
	}
	return base + path
}

func newStreamKey() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "sk_" + base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) createStream(w http.ResponseWriter, r *http.Request) {
	id, err := requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !id.Is(auth.RoleCreator, auth.RoleAdmin) {
		s.fail(w, r, errForbidden("only creators and admins create streams"))
		return
	}
	var req struct {
		Title string `json:"title"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	req.Title = strings.TrimSpace(req.Title)
	if req.Title == "" || utf8.RuneCountInString(req.Title) > MaxTitleLen {
		s.fail(w, r, apiError(http.StatusBadRequest, "bad_request", "title must be 1..200 characters"))
		return
	}
	if cart.HasControl(req.Title, false) {
		s.fail(w, r, apiError(http.StatusBadRequest, "bad_request", "title must not contain control characters"))
		return
	}
	st := cart.Stream{
		ID: uuid.NewString(), Title: req.Title, CreatorID: id.UserID, Status: cart.StreamIdle,
		StreamKey: newStreamKey(), CreatedAt: s.deps.Now().UTC(),
	}
	if err := s.deps.Store.CreateStream(r.Context(), st); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("stream created", "stream", st.ID, "creator", id.UserID)
	// Location names the created resource (RFC 9110 §15.3.2), here and for products and
	// sales: a path on this server, whatever public_url says.
	w.Header().Set("Location", "/api/streams/"+st.ID)
	writeJSON(w, http.StatusCreated, s.streamView(r.Context(), st, id))
}

func (s *Server) listStreams(w http.ResponseWriter, r *http.Request) {
	list, err := s.deps.Store.ListStreams(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]StreamView, 0, len(list))
	for _, st := range list {
		out = append(out, s.streamView(r.Context(), st, identity(r)))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getStream(w http.ResponseWriter, r *http.Request) {
	st, err := s.publicStream(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.streamView(r.Context(), st, identity(r)))
}

func (s *Server) endStream(w http.ResponseWriter, r *http.Request) {
	id, st, err := s.authorizeStream(r, canModerate)
	if err == nil {
		err = decodeNoFields(w, r)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if st.Status == cart.StreamEnded {
		writeJSON(w, http.StatusOK, s.streamView(r.Context(), st, id))
		return
	}
	// The service ends the sales too and emits their sale and product events, then
	// calls back (also when this request stopped waiting: the end is in).
	var view StreamView
	_, err = s.deps.Commerce.EndStream(r.Context(), actor(id), st.ID, func(ctx context.Context, ended cart.Stream) {
		if s.deps.Media != nil {
			s.deps.Media.EndStream(st.ID)
		}
		view = s.streamView(ctx, ended, id)
		public := view
		public.StreamKey = ""
		s.emit(ctx, cart.Event{StreamID: st.ID, Type: cart.EventStream, Data: cart.StreamData{Stream: public, Ended: true}})
		s.log.Info("stream ended", "stream", st.ID, "by", id.UserID)
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, view)
}

// setStreamLive records that the stream's publisher session arrived (live) or left
// (idle) and, if that changed the stored status (applied: see Store.SetStreamLive),
// tells the viewers. Called by the media relay's publisher callback and the retry of
// leaves the store did not take (streamstatus.go).
func (s *Server) setStreamLive(ctx context.Context, sid, session string, live bool) (applied bool, err error) {
	st, applied, err := s.deps.Store.SetStreamLive(ctx, sid, session, live, s.deps.Now())
	if err != nil {
		s.log.Warn("set stream live", "stream", sid, "session", session, "live", live, "err", err)
		return false, err
	}
	if !applied {
		return false, nil
	}
	view := s.streamView(ctx, st, auth.Identity{})
	s.emit(ctx, cart.Event{StreamID: sid, Type: cart.EventStream, Data: cart.StreamData{Stream: view}})
	return true, nil
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	_, st, err := s.authorizeStream(r, canModerate)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list, err := s.deps.Store.ListAudit(r.Context(), st.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// publicStream loads the stream named by the path (404 if it does not exist):
// the first check of a read anyone may do, and the shared step of authorizeStream.
func (s *Server) publicStream(r *http.Request) (cart.Stream, error) {
	sid, err := pathID(r, "sid")
	if err != nil {
		return cart.Stream{}, err
	}
	ctx, cancel := s.storeCtx(r.Context())
	defer cancel()
	return s.loadStream(ctx, sid)
}

// authorizeStream runs the API's check order for an action on the stream named by the
// path: 401 (signed in), 404 (stream exists), 403 (allowed).
func (s *Server) authorizeStream(r *http.Request, allowed func(auth.Identity, cart.Stream) bool) (auth.Identity, cart.Stream, error) {
	id, err := requireUser(r)
	if err != nil {
		return id, cart.Stream{}, err
	}
	st, err := s.publicStream(r)
	if err != nil {
		return id, st, err
	}
	if !allowed(id, st) {
		return id, st, errForbidden("not allowed on this stream")
	}
	return id, st, nil
}

// audit records an action on a stream; a failure is logged, not returned, because the
// action itself has already happened.
func (s *Server) audit(r *http.Request, actor auth.Identity, sid, action, target string, details map[string]any) {
	if details == nil {
		details = map[string]any{}
	}
	e := cart.AuditEntry{
		ID: uuid.NewString(), StreamID: sid, ActorID: actor.UserID, ActorRole: string(actor.Role),
		Action: action, Target: target, Details: details, At: s.deps.Now().UTC(),
	}
	if err := s.deps.Store.AppendAudit(r.Context(), e); err != nil {
		s.log.Error("audit append failed", "stream", sid, "action", action, "err", err)
	}
}
