package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/stream"
	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/live"
)

// MaxSDPBody bounds WHIP/WHEP offers and PATCH fragments (API.md: 64 KiB).
const MaxSDPBody = 64 << 10

// WHIP/WHEP content types (RFC 9725, RFC 8840).
const (
	contentTypeSDP     = "application/sdp"
	contentTypeSDPFrag = "application/trickle-ice-sdpfrag"
)

var _ Media = (*stream.Relay)(nil)

// mediaKind is one side of the media API: WHIP ingest or WHEP playback.
type mediaKind struct {
	prefix string // "/whip/" or "/whep/"
	role   stream.Role
}

var (
	whip = mediaKind{"/whip/", stream.RolePublisher}
	whep = mediaKind{"/whep/", stream.RoleViewer}
)

func (s *Server) mediaRoutes(mux *http.ServeMux) {
	for _, k := range []mediaKind{whip, whep} {
		mux.HandleFunc("POST "+k.prefix+"{sid}", s.mediaOffer(k))
		mux.HandleFunc("OPTIONS "+k.prefix+"{sid}", s.mediaOptions(k, false))
		mux.HandleFunc("DELETE "+k.prefix+"{sid}/{rid}", s.mediaDelete(k))
		mux.HandleFunc("PATCH "+k.prefix+"{sid}/{rid}", s.mediaPatch(k))
		mux.HandleFunc("OPTIONS "+k.prefix+"{sid}/{rid}", s.mediaOptions(k, true))
	}
	mux.HandleFunc("POST /api/streams/{sid}/media", s.setMediaMute)
}

// OnPublisher is the relay's publisher callback: the stream goes live when its
// publisher arrives, and this node is recorded as its origin so that viewers on other
// nodes pull the media from here (cascade.go). When the publisher leaves, the stream
// goes idle and its origin is cleared, unless another publisher has already come
// (here or on another node) with a new session: the store fences the status by
// session (Store.SetStreamLive). While its publisher is here, this node's relay
// follows the stream's stored media mute, wherever it was set. Each store call waits
// Options.StoreTimeout at most (storeCtx): the callback runs inside the WHIP request
// (or the DELETE that ends the session). A leave the store did not take is retried in
// the background until it is in (publisherLeft). A publisher whose stream cannot be
// recorded live (the store does not answer) is refused: its WHIP answers 503
// unavailable (refusedPublishers) and the publisher tries again, instead of sending
// media to viewers told the stream is idle; its leave is recorded as any other (its
// arrival may yet reach the store late: the leave fences it).
func (s *Server) OnPublisher(streamID, session string, live bool) {
	if !live {
		if s.refusedPublishers.has(session) {
			return // its leave was recorded (or is pending) when it was refused
		}
		s.publisherLeft(streamID, session)
		return
	}
	ctx, cancel := s.storeCtx(context.Background())
	claimed := s.claimOrigin(ctx, streamID, session)
	cancel()
	if !claimed {
		return
	}
	s.followMute(streamID)
	ctx, cancel = s.storeCtx(context.Background())
	_, err := s.setStreamLive(ctx, streamID, session, true)
	cancel()
	if !retryable(err) {
		return
	}
	if m, merr := s.media(); merr == nil {
		s.refusedPublishers.put(session, fmt.Errorf("%w: record the stream live: %v", cart.ErrUnavailable, err), s.deps.Now())
		_ = m.Delete(streamID, session, stream.RolePublisher)
		s.retryLeave(streamID, session) // the store just failed: the WHIP answers now
	}
}

// refusals are the WHIP sessions OnPublisher refused (the store did not answer), each
// with its error, kept for the WHIP request whose Publish called OnPublisher, which
// takes it right after (mediaOffer), and for the session's leave, which it skips. One
// never taken (a Publish not made by mediaOffer, or its request gone) is forgotten
// refusalKeep after it was refused: the map never grows with refusals nobody takes.
type refusals struct {
	mu sync.Mutex
	m  map[string]refusal // guarded by mu; session id → its refusal
}

// refusal is one refused WHIP session: its error and when it was refused.
type refusal struct {
	err error
	at  time.Time
}

// refusalKeep is how long a refusal nobody took is kept: far longer than a WHIP
// request's Publish (its store calls are bounded by Options.StoreTimeout).
const refusalKeep = time.Minute

// put records session's refusal at now and forgets the ones older than refusalKeep.
func (r *refusals) put(session string, err error, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]refusal{}
	}
	for k, v := range r.m {
		if now.Sub(v.at) > refusalKeep {
			delete(r.m, k)
		}
	}
	r.m[session] = refusal{err, now}
}

// has reports whether session was refused and not taken yet.
func (r *refusals) has(session string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.m[session]
	return ok
}

// take returns session's refusal (nil: none) and forgets it.
func (r *refusals) take(session string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.m[session]
	if !ok {
		return nil
	}
	delete(r.m, session)
	return v.err
}

// len is the number of refusals kept.
func (r *refusals) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// media returns the relay or a 503 when none is wired.
func (s *Server) media() (Media, error) {
	if s.deps.Media == nil {
		return nil, apiError(http.StatusServiceUnavailable, "unavailable", "media relay not configured")
	}
	return s.deps.Media, nil
}

// mediaOffer answers POST /whip/{sid} and POST /whep/{sid}: 201, Location, ETag and
// the SDP answer.
func (s *Server) mediaOffer(k mediaKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st, err := s.authorizeMedia(r, k)
		var offer string
		if err == nil {
			offer, err = readSDP(w, r, contentTypeSDP)
		}
		if err == nil {
			err = s.checkOffer(offer, k.role) // 400 before the 409s below
		}
		if err == nil && st.Status == cart.StreamEnded {
			err = apiError(http.StatusConflict, "conflict", "stream has ended")
		}
		if err == nil && k.role == stream.RolePublisher {
			ctx, cancel := s.storeCtx(r.Context())
			err = s.checkNoPublisherElsewhere(ctx, st.ID)
			cancel()
		}
		var m Media
		if err == nil {
			m, err = s.media()
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		var answer, rid string
		if k.role == stream.RolePublisher {
			answer, rid, err = m.Publish(r.Context(), st.ID, offer)
			refused := s.refusedPublishers.take(rid)
			switch {
			case err != nil:
			case refused != nil:
				err = refused // the store did not answer OnPublisher: 503
			case m.PublisherSession(st.ID) != rid:
				// Closed at once by OnPublisher: it lost the claim on the stream to a
				// publisher on another node (cascade.go).
				err = apiError(http.StatusConflict, "conflict", "stream already has a publisher")
			}
		} else {
			answer, rid, err = m.Subscribe(r.Context(), st.ID, offer)
			if err == nil {
				s.recordViewerSession(r.Context(), st.ID, rid)
			}
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		h := w.Header()
		h.Set("Location", k.prefix+st.ID+"/"+rid)
		h.Set("ETag", etag(rid))
		h.Set("Content-Type", contentTypeSDP)
		h.Set("Accept-Patch", contentTypeSDPFrag)
		s.iceServerLinks(h)
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, answer)
		// The answer is complete only once the handler returns: a client gone by now
		// (it gave up waiting: another node pulling with a deadline, a closed tab)
		// never learns the session, which would wait for its ICE timeouts.
		if r.Context().Err() != nil {
			s.log.Debug("media session closed: the client left before the answer", "stream", st.ID, "session", rid)
			_ = m.Delete(st.ID, rid, k.role)
		}
	}
}

// checkOffer judges an offer's shape: the relay's check (which bounds its ICE
// candidates too), or the package's when no relay is wired (the request then answers
// 503 further on).
func (s *Server) checkOffer(offer string, role stream.Role) error {
	if s.deps.Media != nil {
		return s.deps.Media.CheckOffer(offer, role)
	}
	return stream.CheckOffer(offer, role)
}

// mediaDelete ends a session: 200. WHIP needs the owner's token or the stream key;
// a WHEP resource id is unguessable and needs no bearer.
func (s *Server) mediaDelete(k mediaKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st, m, origin, err := s.authorizeSession(r, k)
		if err == nil && origin != "" {
			s.forwardSession(w, r, origin, "")
			return
		}
		if err == nil {
			err = m.Delete(st.ID, r.PathValue("rid"), k.role)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if k.role != stream.RolePublisher {
			s.forgetViewerSession(r.Context(), st.ID, r.PathValue("rid"))
		}
		w.WriteHeader(http.StatusOK)
	}
}

// mediaPatch applies trickle ICE candidates (204); an ICE restart is not supported
// (422, RFC 9725 §4.3.2).
func (s *Server) mediaPatch(k mediaKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st, m, origin, err := s.authorizeSession(r, k)
		rid := r.PathValue("rid")
		var frag string
		if err == nil {
			frag, err = readSDP(w, r, contentTypeSDPFrag)
		}
		if err == nil {
			if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != etag(rid) {
				err = apiError(http.StatusPreconditionFailed, "precondition_failed", "If-Match does not match the session's ETag")
			}
		}
		if err == nil && origin != "" {
			s.forwardSession(w, r, origin, frag)
			return
		}
		if err == nil {
			err = m.Patch(st.ID, rid, k.role, frag)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		w.Header().Set("ETag", etag(rid))
		w.WriteHeader(http.StatusNoContent)
	}
}

// mediaOptions tells what the endpoint accepts, with the ICE servers as Link headers.
// CORS headers come from the cors middleware.
func (s *Server) mediaOptions(k mediaKind, resource bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if resource {
			h.Set("Allow", "PATCH, DELETE, OPTIONS")
			h.Set("Accept-Patch", contentTypeSDPFrag)
		} else {
			h.Set("Allow", "POST, OPTIONS")
			h.Set("Accept-Post", contentTypeSDP)
		}
		s.iceServerLinks(h)
		w.WriteHeader(http.StatusNoContent)
	}
}

// mediaMuteRequest is the body of POST /api/streams/{sid}/media (nil = unchanged).
type mediaMuteRequest struct {
	AudioMuted *bool `json:"audio_muted"`
	VideoMuted *bool `json:"video_muted"`
}

func (s *Server) setMediaMute(w http.ResponseWriter, r *http.Request) {
	id, st, err := s.authorizeStream(r, canModerate)
	var req mediaMuteRequest
	if err == nil {
		err = decodeJSONOrEmpty(w, r, &req)
	}
	if err == nil && st.Status == cart.StreamEnded {
		err = apiError(http.StatusConflict, "conflict", "stream has ended") // its media is over (the store checks again)
	}
	var m Media
	if err == nil {
		m, err = s.media()
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The store holds the state for every node; the publisher's node follows it
	// (mediafollow.go), this node applies it at once.
	mm, err := s.deps.Store.SetMediaMute(r.Context(), st.ID, req.AudioMuted, req.VideoMuted)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	state := live.MediaState{AudioMuted: mm.AudioMuted, VideoMuted: mm.VideoMuted}
	m.SetMute(st.ID, &state.AudioMuted, &state.VideoMuted)
	s.audit(r, id, st.ID, "media", st.ID, map[string]any{
		"audio_muted": state.AudioMuted, "video_muted": state.VideoMuted})
	s.emit(r.Context(), cart.Event{StreamID: st.ID, Type: live.EventMedia, Data: state})
	writeJSON(w, http.StatusOK, state)
}

// authorizeMedia runs the checks every media request starts with, in the API's order:
// 401 (bearer), 404 (stream), then 401/403 (checkMediaAccess).
func (s *Server) authorizeMedia(r *http.Request, k mediaKind) (cart.Stream, error) {
	st, err := s.mediaStream(r, k)
	if err == nil {
		err = s.checkMediaAccess(r, k, st)
	}
	return st, err
}

// authorizeSession runs the checks of a request on a session (DELETE, PATCH) in the
// API's order: 401 (bearer), 404 (stream, then session), 403 (checkMediaAccess).
// origin is set when the session is a WHIP session of another node (sessionElsewhere):
// the request is to be passed on there.
func (s *Server) authorizeSession(r *http.Request, k mediaKind) (st cart.Stream, m Media, origin string, err error) {
	st, err = s.mediaStream(r, k)
	if err == nil && k.role == stream.RolePublisher && identity(r).Anonymous() && !auth.KeyEqual(bearer(r), st.StreamKey) {
		err = apiError(http.StatusUnauthorized, "unauthorized", "bearer is neither a valid token nor the stream key")
	}
	if err == nil {
		m, err = s.media()
	}
	if err == nil && !m.Exists(st.ID, r.PathValue("rid"), k.role) {
		if k.role == stream.RolePublisher {
			origin = s.sessionElsewhere(r, st.ID, r.PathValue("rid"))
		} else {
			origin = s.viewerSessionElsewhere(r, st.ID, r.PathValue("rid"))
		}
		if origin == "" {
			err = apiError(http.StatusNotFound, "not_found", "no such media session")
		}
	}
	if err == nil {
		err = s.checkMediaAccess(r, k, st)
	}
	return st, m, origin, err
}

// forwardedHeader marks a session request one node passed on to another, which then
// answers it itself.
const forwardedHeader = "X-Livecart-Forwarded-By"

// sessionElsewhere returns the base URL of the node that holds the stream's WHIP
// session rid, "" when that is not another node (or not known). Any node answers a
// publisher's WHIP, and so the DELETE or PATCH of its session too: behind a load
// balancer they may reach another node than the POST did. A request already passed
// on is not passed on again.
func (s *Server) sessionElsewhere(r *http.Request, sid, rid string) string {
	if !s.clustered() || r.Header.Get(forwardedHeader) != "" {
		return ""
	}
	ctx, cancel := s.storeCtx(r.Context())
	defer cancel()
	o, err := s.deps.Store.MediaOrigin(ctx, sid, s.deps.Now())
	if err != nil || o.Session != rid || o.NodeID == s.deps.Options.NodeID || o.URL == "" {
		return ""
	}
	return o.URL
}

// viewerSessionTTL bounds how long a node's WHEP session is found from the other
// nodes (recordViewerSession): a DELETE or PATCH of a session older than this that
// reaches another node is answered 404 there.
const viewerSessionTTL = 24 * time.Hour

// recordViewerSession notes in the store, when nodes share one, that the stream's WHEP
// session rid lives on this node, so that its DELETE or PATCH reaching another node
// (behind a load balancer) is passed on here. Best effort: a store that does not answer
// leaves the session working, only not found from other nodes.
func (s *Server) recordViewerSession(ctx context.Context, sid, rid string) {
	if !s.clustered() {
		return
	}
	url := s.deps.Options.AdvertiseURL()
	if url == "" {
		return
	}
	ctx, cancel := s.storeCtx(context.WithoutCancel(ctx))
	defer cancel()
	if err := s.deps.Store.PutMediaSession(ctx, sid, rid, url, s.deps.Now(), viewerSessionTTL); err != nil {
		s.log.Warn("WHEP session not recorded for the other nodes", "stream", sid, "session", rid, "err", err)
	}
}

// forgetViewerSession drops what recordViewerSession noted, once the session is deleted.
func (s *Server) forgetViewerSession(ctx context.Context, sid, rid string) {
	if !s.clustered() {
		return
	}
	ctx, cancel := s.storeCtx(context.WithoutCancel(ctx))
	defer cancel()
	if err := s.deps.Store.DropMediaSession(ctx, sid, rid); err != nil {
		s.log.Debug("WHEP session record not dropped (it lapses by itself)", "stream", sid, "session", rid, "err", err)
	}
}

// viewerSessionElsewhere returns the base URL of the node that holds the stream's WHEP
// session rid, "" when that is not another node (or not known). A request already
// passed on is not passed on again.
func (s *Server) viewerSessionElsewhere(r *http.Request, sid, rid string) string {
	if !s.clustered() || r.Header.Get(forwardedHeader) != "" {
		return ""
	}
	ctx, cancel := s.storeCtx(r.Context())
	defer cancel()
	url, err := s.deps.Store.MediaSession(ctx, sid, rid, s.deps.Now())
	if err != nil || url == "" || url == s.deps.Options.AdvertiseURL() {
		return ""
	}
	return url
}

// forwardClient passes session requests on to other nodes (no keep-alive, as the
// cascade's: they are rare).
var forwardClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}, Timeout: 10 * time.Second}

// forwardSession passes r, a DELETE or PATCH (its fragment frag, already read) of a
// session, on to origin and answers with origin's answer; 503 unavailable when origin
// does not answer.
func (s *Server) forwardSession(w http.ResponseWriter, r *http.Request, origin, frag string) {
	target := strings.TrimRight(origin, "/") + r.URL.EscapedPath()
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target, strings.NewReader(frag))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, h := range []string{"Authorization", "Content-Type", "If-Match"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(forwardedHeader, s.deps.Options.NodeID)
	resp, err := forwardClient.Do(req)
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %s %s: %v", cart.ErrUnavailable, r.Method, target, err))
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "ETag", "Retry-After"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, MaxSDPBody))
}

// mediaStream: WHIP needs a bearer (401), then the stream must exist (404).
func (s *Server) mediaStream(r *http.Request, k mediaKind) (cart.Stream, error) {
	if k.role == stream.RolePublisher && bearer(r) == "" {
		return cart.Stream{}, apiError(http.StatusUnauthorized, "unauthorized", "WHIP needs the owner's token or the stream key as bearer")
	}
	return s.publicStream(r)
}

// checkMediaAccess: WHEP is open to anyone. WHIP takes the stream key or a token of the
// stream's owner (or an admin): a valid token of someone else → 403, anything else →
// 401.
func (s *Server) checkMediaAccess(r *http.Request, k mediaKind, st cart.Stream) error {
	if k.role != stream.RolePublisher {
		return nil
	}
	if auth.KeyEqual(bearer(r), st.StreamKey) {
		return nil
	}
	id := identity(r)
	switch {
	case id.Anonymous():
		return apiError(http.StatusUnauthorized, "unauthorized", "bearer is neither a valid token nor the stream key")
	case !canManage(id, st):
		return errForbidden("only the stream's owner may publish")
	}
	return nil
}

// readSDP reads a size-limited body of the wanted content type, as readBody does JSON:
// one declared over the bound is refused unread (no "100 Continue" asked for it), one
// with a content coding is 415.
func readSDP(w http.ResponseWriter, r *http.Request, want string) (string, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != want {
		return "", apiError(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be "+want)
	}
	if err := checkNoCoding(r); err != nil {
		return "", err
	}
	if r.ContentLength > MaxSDPBody {
		return "", apiError(http.StatusRequestEntityTooLarge, "payload_too_large", fmt.Sprintf("body over %d bytes", MaxSDPBody))
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSDPBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return "", apiError(http.StatusRequestEntityTooLarge, "payload_too_large", fmt.Sprintf("body over %d bytes", MaxSDPBody))
		}
		return "", apiError(http.StatusBadRequest, "bad_request", "cannot read body")
	}
	if strings.TrimSpace(string(raw)) == "" {
		return "", apiError(http.StatusBadRequest, "bad_request", "empty body")
	}
	return string(raw), nil
}

// iceServerLinks adds one Link header per configured ICE server (RFC 9725 §4.4).
func (s *Server) iceServerLinks(h http.Header) {
	for _, u := range s.deps.Options.ICEServers {
		h.Add("Link", "<"+u+`>; rel="ice-server"`)
	}
}

func etag(rid string) string { return `"` + rid + `"` }
