package web

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/stream"
	"github.com/livecart/livecart/web/auth"
)

// APIError is an error with its HTTP status and API code, written as
// {"error":{"code","message"}}.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }

// apiError builds an APIError.
func apiError(status int, code, msg string) *APIError {
	return &APIError{Status: status, Code: code, Message: msg}
}

// errorMapping maps a sentinel error to its HTTP status and API code. named: the
// sentinel's text only names the code ("conflict", "not found"), so the message leaves
// it out (humanMessage).
type errorMapping struct {
	err    error
	status int
	code   string
	named  bool
}

// errorMappings is the one place where domain errors meet HTTP. Rooms add their own
// sentinels here. The first match wins.
var errorMappings = []errorMapping{
	{auth.ErrInvalidToken, http.StatusUnauthorized, "unauthorized", false},
	{cart.ErrBadRequest, http.StatusBadRequest, "bad_request", true},
	{cart.ErrNotFound, http.StatusNotFound, "not_found", true},
	{cart.ErrForbidden, http.StatusForbidden, "forbidden", true},
	{cart.ErrSoldOut, http.StatusConflict, "sold_out", true},
	{cart.ErrLimitExceeded, http.StatusConflict, "limit_exceeded", true},
	{cart.ErrSaleNotActive, http.StatusConflict, "sale_not_active", true},
	{cart.ErrHoldExpired, http.StatusConflict, "hold_expired", true},
	{cart.ErrConflict, http.StatusConflict, "conflict", true},
	{cart.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", false},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "unavailable", false},
	{stream.ErrPublisherExists, http.StatusConflict, "conflict", false},
	{stream.ErrEnded, http.StatusConflict, "conflict", false},
	{stream.ErrBadOffer, http.StatusBadRequest, "bad_request", false},
	{stream.ErrBadFragment, http.StatusBadRequest, "bad_request", false},
	{stream.ErrNotFound, http.StatusNotFound, "not_found", false},
	{stream.ErrNotSupported, http.StatusUnprocessableEntity, "unprocessable", false},
	{stream.ErrClosed, http.StatusServiceUnavailable, "unavailable", false},
}

// unavailableMessage answers a backing store's (or the relay's) outage.
const unavailableMessage = "temporarily unavailable; try again in a moment"

// toAPIError classifies err; unknown errors become 500 internal.
func toAPIError(err error) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	for _, m := range errorMappings {
		if errors.Is(err, m.err) {
			if m.status == http.StatusServiceUnavailable {
				// The cause (Redis's address, a driver's error) is the operator's: it is
				// logged (Server.fail), the client is told to come back.
				return apiError(m.status, m.code, unavailableMessage)
			}
			msg := err.Error()
			if m.named {
				msg = humanMessage(msg, m.err.Error())
			}
			return apiError(m.status, m.code, msg)
		}
	}
	return apiError(http.StatusInternalServerError, "internal", "internal error")
}

// humanMessage drops the words of the code's sentinel from msg, which the cart wraps as
// "the cart is empty: conflict", "product p: not found" or "bad request: quantity must
// be ≥ 1": the code already says it. A not-found keeps saying so ("product p not
// found"); a message that is the sentinel alone, or has it elsewhere, stays as it is.
func humanMessage(msg, sentinel string) string {
	if rest, ok := strings.CutSuffix(msg, ": "+sentinel); ok && rest != "" {
		if sentinel == cart.ErrNotFound.Error() && !strings.HasSuffix(rest, " "+sentinel) {
			return rest + " " + sentinel // the Redis scripts' "product not found" says it already
		}
		return rest
	}
	if rest, ok := strings.CutPrefix(msg, sentinel+": "); ok && rest != "" {
		return rest
	}
	return msg
}
