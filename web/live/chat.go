package live

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/livecart/livecart/cart"
)

// MaxChatRunes bounds a chat message (Unicode code points).
const MaxChatRunes = 500

// MsgTextControl refuses a chat message or an announcement holding a control character.
const MsgTextControl = "text must not contain control characters (line breaks and tabs are fine)"

// clientMessage is what a client may send.
type clientMessage struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// readLoop reads client frames until the connection fails or closes.
func (c *conn) readLoop(ctx context.Context) {
	c.ws.SetReadLimit(MaxClientFrame)
	wait := 2 * c.hub.cfg.PingInterval
	c.ws.SetReadDeadline(time.Now().Add(wait))
	c.ws.SetPongHandler(func(string) error { return c.ws.SetReadDeadline(time.Now().Add(wait)) })
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			return // a frame over the limit has been answered with 1009 by the library
		}
		c.ws.SetReadDeadline(time.Now().Add(wait))
		if typ != websocket.TextMessage {
			c.sendError("bad_request", "binary frames are not accepted")
			continue
		}
		c.handleMessage(ctx, data)
	}
}

func (c *conn) handleMessage(ctx context.Context, data []byte) {
	if !ValidJSONText(data) {
		// JSON decoding would turn the bad bytes (or a lone surrogate escape) into
		// U+FFFD and chat the altered text.
		c.sendError("bad_request", "a text frame must be valid UTF-8 naming Unicode characters only")
		return
	}
	var m clientMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil || dec.More() || !isObject(data) {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			c.sendError("bad_request", fmt.Sprintf("field %s must be a string", typeErr.Field))
			return
		}
		c.sendError("bad_request", "a frame must be one JSON object")
		return
	}
	switch m.Type {
	case "chat":
		c.chat(ctx, m.Text)
	case "ping":
		c.send(EventPong, nil)
	default:
		c.sendError("bad_request", fmt.Sprintf("unknown message type %q", m.Type))
	}
}

// isObject reports whether data, which decoded into a clientMessage, is a JSON object:
// encoding/json takes a null for one and leaves the message empty.
func isObject(data []byte) bool {
	d := bytes.TrimLeft(data, " \t\r\n")
	return len(d) > 0 && d[0] == '{'
}

// chat checks and publishes a chat message: signed in, well formed, not muted, not
// too fast — in that order.
func (c *conn) chat(ctx context.Context, text string) {
	if c.who.Anonymous() {
		c.sendError("unauthorized", "sign in to chat")
		return
	}
	if !c.whoUntil.IsZero() && !c.hub.cfg.Now().Before(c.whoUntil) {
		c.sendError("unauthorized", "your sign-in has expired; sign in again to chat")
		return
	}
	if strings.TrimSpace(text) == "" {
		c.sendError("bad_request", "text must not be empty")
		return
	}
	if n := utf8.RuneCountInString(text); n > MaxChatRunes {
		c.sendError("bad_request", fmt.Sprintf("text has %d characters; at most %d", n, MaxChatRunes))
		return
	}
	if cart.HasControl(text, true) {
		// A NUL, a bell or an escape sequence shows as garbage (or worse, in a
		// terminal) on every viewer's screen; line breaks and tabs are text.
		c.sendError("bad_request", MsgTextControl)
		return
	}
	h := c.hub
	until, muted, allowed, err := h.checkChat(ctx, c.sid, c.who.UserID)
	if err != nil {
		c.sendError("unavailable", "chat is unavailable; try again")
		return
	}
	if muted {
		c.sendError("muted", "you are muted until "+until.UTC().Format(time.RFC3339))
		return
	}
	if !allowed {
		c.sendError("rate_limited", "too many messages; slow down")
		return
	}
	msg := ChatData{ID: uuid.NewString(), UserID: c.who.UserID, Name: c.who.Name, Text: text}
	if _, err := h.publish(ctx, c.sid, EventChat, msg); err != nil {
		c.sendError("unavailable", "chat is unavailable; try again")
	}
}

// chatCheckTimeout bounds a chat message's check (mute and limit) on a Redis that does
// not answer: the message is then refused as unavailable.
const chatCheckTimeout = 2 * time.Second

// checkChat reports whether userID is muted on sid (and until when) and, if not,
// whether the message is within the user's chat limit on the stream. On a ChatGate
// (Redis) both come from one call and the limit holds over every node. Should that
// call fail while Redis still answers (the script refused: a failover's read-only
// replica, a key of the wrong type), the mute is read as without a gate and the limit
// is this node's own, so chat goes on, limited per node, rather than stop until the
// gate works again; should Redis not answer within chatCheckTimeout, or not at all,
// the message is refused (err), as every chat message is while Redis is down (it
// could not be published either).
func (h *Hub) checkChat(ctx context.Context, sid, userID string) (until time.Time, muted, allowed bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, chatCheckTimeout)
	defer cancel()
	var gateErr error
	if g, ok := h.cfg.Bus.(ChatGate); ok {
		until, muted, allowed, gateErr = g.ChatCheck(ctx, sid, userID, h.cfg.ChatRate, h.cfg.ChatBurst)
		if gateErr == nil {
			h.chatGateFailing.Store(false)
			return until, muted, allowed, nil
		}
		if ctx.Err() != nil {
			return until, false, false, gateErr
		}
	}
	until, muted, err = h.cfg.Bus.MutedUntil(ctx, sid, userID)
	if err != nil {
		return until, false, false, err // Redis is down: the outage is logged elsewhere
	}
	if gateErr != nil && !h.chatGateFailing.Swap(true) {
		h.cfg.Logger.Warn("live: shared chat limit failed; each node's own limit holds until it works again", "stream", sid, "err", gateErr)
	}
	if muted {
		return until, true, false, nil
	}
	return until, false, h.allowChat(sid, userID), nil
}
