package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/live"
)

// Live is what the HTTP edge needs of the live channel (live.Hub implements it).
type Live interface {
	ServeWS(w http.ResponseWriter, r *http.Request, sid string, opt live.ServeOptions)
	Mute(ctx context.Context, sid, userID string, until time.Time) error
	Unmute(ctx context.Context, sid, userID string) error
}

// Mute durations (API.md: 10 s – 24 h, both inclusive).
const (
	minMuteSeconds = 10
	maxMuteSeconds = 24 * 60 * 60
)

func (s *Server) liveRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /ws/{sid}", s.serveLive)
	mux.HandleFunc("POST /api/streams/{sid}/mutes", s.muteUser)
	mux.HandleFunc("DELETE /api/streams/{sid}/mutes/{user_id}", s.unmuteUser)
	mux.HandleFunc("DELETE /api/streams/{sid}/chat/{message_id}", s.deleteChat)
	mux.HandleFunc("POST /api/streams/{sid}/announce", s.announce)
}

func (s *Server) serveLive(w http.ResponseWriter, r *http.Request) {
	if s.deps.Live == nil {
		s.fail(w, r, apiError(http.StatusServiceUnavailable, "unavailable", "live channel not configured"))
		return
	}
	st, err := s.publicStream(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.deps.Live.ServeWS(w, r, st.ID, live.ServeOptions{
		Who:       identity(r),
		WhoUntil:  identityUntil(r),
		Ended:     st.Status == cart.StreamEnded,
		Snapshots: live.SnapshotFunc(s.liveSnapshot),
	})
}

// liveSnapshot is the state a new viewer starts from.
func (s *Server) liveSnapshot(ctx context.Context, sid string) (live.Snapshot, error) {
	st, err := s.deps.Store.GetStream(ctx, sid)
	if err != nil {
		return live.Snapshot{}, err
	}
	pinned, err := s.deps.Store.ListPinned(ctx, sid)
	if err != nil {
		return live.Snapshot{}, err
	}
	sales, err := s.deps.Store.ListSales(ctx, sid)
	if err != nil {
		return live.Snapshot{}, err
	}
	mute, err := s.deps.Store.MediaMute(ctx, sid)
	if err != nil {
		return live.Snapshot{}, err
	}
	snap := live.Snapshot{Stream: s.streamView(ctx, st, auth.Identity{}), Pinned: pinned, Sales: sales}
	snap.Media = live.MediaState{AudioMuted: mute.AudioMuted, VideoMuted: mute.VideoMuted}
	return snap, nil
}

// liveAction runs the check order for a moderation endpoint: 401, 404, 403.
func (s *Server) liveAction(r *http.Request) (auth.Identity, cart.Stream, error) {
	id, st, err := s.authorizeStream(r, canModerate)
	if err == nil && s.deps.Live == nil {
		err = apiError(http.StatusServiceUnavailable, "unavailable", "live channel not configured")
	}
	return id, st, err
}

func (s *Server) muteUser(w http.ResponseWriter, r *http.Request) {
	id, st, err := s.liveAction(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req struct {
		UserID    string `json:"user_id"`
		DurationS int64  `json:"duration_s"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if !auth.ValidUserID(req.UserID) {
		s.fail(w, r, errBadUserID())
		return
	}
	if req.DurationS < minMuteSeconds || req.DurationS > maxMuteSeconds {
		s.fail(w, r, apiError(http.StatusBadRequest, "bad_request", fmt.Sprintf("duration_s must be %d..%d", minMuteSeconds, maxMuteSeconds)))
		return
	}
	until := s.deps.Now().UTC().Add(time.Duration(req.DurationS) * time.Second).Truncate(time.Millisecond)
	data := live.MuteData{UserID: req.UserID, Until: until}
	// The event's place first: refused (the stream's events wait for Redis, their
	// queue full), nothing is done, no audit entry; the retry mutes and audits once.
	ev, err := s.reserveEmit(cart.Event{StreamID: st.ID, Type: live.EventMute, Data: data})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer ev.cancel() // the mute failed; after emit: nothing
	if err := s.deps.Live.Mute(r.Context(), st.ID, req.UserID, until); err != nil {
		s.fail(w, r, fmt.Errorf("%w: mute: %v", cart.ErrUnavailable, err))
		return
	}
	// Audited before the event, as every audited action: the moderation console
	// reloads the audit log (its muted list) when the event comes.
	s.audit(r, id, st.ID, "mute", req.UserID, map[string]any{"duration_s": req.DurationS, "until": until})
	ev.emit(r.Context())
	writeJSON(w, http.StatusCreated, data)
}

// errBadUserID refuses a user id no token carries (API.md: any string up to 128
// characters; a token's is valid UTF-8), in a mute's body or an unmute's path alike.
func errBadUserID() error {
	return apiError(http.StatusBadRequest, "bad_request", fmt.Sprintf("user_id must be 1..%d characters of valid UTF-8", auth.MaxUserIDLen))
}

func (s *Server) unmuteUser(w http.ResponseWriter, r *http.Request) {
	id, st, err := s.liveAction(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	user := r.PathValue("user_id")
	if !auth.ValidUserID(user) { // as muteUser: no id a token may carry is refused, none other taken
		s.fail(w, r, errBadUserID())
		return
	}
	if err := s.deps.Live.Unmute(r.Context(), st.ID, user); err != nil {
		s.fail(w, r, fmt.Errorf("%w: unmute: %v", cart.ErrUnavailable, err))
		return
	}
	s.audit(r, id, st.ID, "unmute", user, nil)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteChat(w http.ResponseWriter, r *http.Request) {
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
	msgID, err := pathID(r, "message_id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !canModerate(id, st) {
		s.fail(w, r, errForbidden("only the owner, moderators and admins delete chat"))
		return
	}
	// The event's place first (see muteUser): a refused deletion leaves no audit entry.
	ev, err := s.reserveEmit(cart.Event{StreamID: st.ID, Type: live.EventChatDelete, Data: live.ChatDeleteData{ID: msgID}})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer ev.cancel() // after emit: nothing
	s.audit(r, id, st.ID, "chat_delete", msgID, nil)
	ev.emit(r.Context())
	w.WriteHeader(http.StatusNoContent)
}

// announce sends a text to every viewer as an `announce` event (owner, moderator,
// admin). The load generator uses it to time deliveries.
func (s *Server) announce(w http.ResponseWriter, r *http.Request) {
	_, st, err := s.liveAction(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req live.AnnounceData
	if err := decodeJSON(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if strings.TrimSpace(req.Text) == "" || utf8.RuneCountInString(req.Text) > live.MaxChatRunes {
		s.fail(w, r, apiError(http.StatusBadRequest, "bad_request", fmt.Sprintf("text must be 1..%d characters", live.MaxChatRunes)))
		return
	}
	if cart.HasControl(req.Text, true) {
		s.fail(w, r, apiError(http.StatusBadRequest, "bad_request", live.MsgTextControl))
		return
	}
	if err := s.emitChecked(r.Context(), cart.Event{StreamID: st.ID, Type: live.EventAnnounce, Data: req}); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
