package web

import (
	"context"
	"errors"
	"net/http"

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

// errorMapping maps a sentinel error to its HTTP status and API code.
type errorMapping struct {
	err    error
	status int
	code   string
}

// errorMappings is the one place where domain errors meet HTTP. Rooms add their own
// sentinels here. The first match wins.
var errorMappings = []errorMapping{
	{auth.ErrInvalidToken, http.StatusUnauthorized, "unauthorized"},
	{cart.ErrBadRequest, http.StatusBadRequest, "bad_request"},
	{cart.ErrNotFound, http.StatusNotFound, "not_found"},
	{cart.ErrForbidden, http.StatusForbidden, "forbidden"},
	{cart.ErrSoldOut, http.StatusConflict, "sold_out"},
	{cart.ErrLimitExceeded, http.StatusConflict, "limit_exceeded"},
	{cart.ErrSaleNotActive, http.StatusConflict, "sale_not_active"},
	{cart.ErrHoldExpired, http.StatusConflict, "hold_expired"},
	{cart.ErrConflict, http.StatusConflict, "conflict"},
	{cart.ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "unavailable"},
	{stream.ErrPublisherExists, http.StatusConflict, "conflict"},
	{stream.ErrEnded, http.StatusConflict, "conflict"},
	{stream.ErrBadOffer, http.StatusBadRequest, "bad_request"},
	{stream.ErrNotFound, http.StatusNotFound, "not_found"},
	{stream.ErrNotSupported, http.StatusUnprocessableEntity, "unprocessable"},
	{stream.ErrClosed, http.StatusServiceUnavailable, "unavailable"},
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
			return apiError(m.status, m.code, err.Error())
		}
	}
	return apiError(http.StatusInternalServerError, "internal", "internal error")
}
