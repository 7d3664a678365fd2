package cart

import (
	"errors"
	"fmt"
)

// Sentinel errors of the commerce domain. Stores and the service wrap them with %w and
// a human message; the HTTP edge maps them to the API's error codes with errors.Is.
var (
	ErrBadRequest    = errors.New("bad request")       // bad_request (400)
	ErrNotFound      = errors.New("not found")         // not_found (404)
	ErrForbidden     = errors.New("forbidden")         // forbidden (403)
	ErrConflict      = errors.New("conflict")          // conflict (409)
	ErrSoldOut       = errors.New("sold out")          // sold_out (409)
	ErrLimitExceeded = errors.New("limit exceeded")    // limit_exceeded (409)
	ErrSaleNotActive = errors.New("sale not active")   // sale_not_active (409)
	ErrHoldExpired   = errors.New("hold expired")      // hold_expired (409)
	ErrUnavailable   = errors.New("store unavailable") // unavailable (503)
)

// The conflicts of a checkout whose live holds span several streams (an order is of one
// stream), worded alike by both stores.
const (
	msgCartOfSeveralStreams  = "the cart holds items of several streams; say which one in stream_id"
	msgHoldsOfSeveralStreams = "hold_ids names holds of several streams; an order is of one stream, so list one stream's holds"
)

// Other business errors both stores word alike (web's TestStoresWordErrorsAlike compares
// them); the Redis store's Lua scripts and its claim say the same.
const (
	msgHoldsExpired         = "holds have expired: " // then their ids, ", "-separated
	msgIdempotencyKeyReused = "the idempotency key was used with another request"
)

// The bounds of a stream's products and sales (ServiceConfig.MaxProducts, MaxSales),
// worded alike by both stores: "a stream has at most 500 sales".
const (
	msgMaxProducts = "a stream has at most %d products"
	msgMaxSales    = "a stream has at most %d sales"
)

func errMaxProducts(n int) error { return fmt.Errorf(msgMaxProducts+": %w", n, ErrConflict) }
func errMaxSales(n int) error    { return fmt.Errorf(msgMaxSales+": %w", n, ErrConflict) }

// errStreamEnded refuses a change to a stream that has ended.
var errStreamEnded = fmt.Errorf("stream has ended: %w", ErrConflict)
