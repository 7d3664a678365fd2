package cart

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Hand-written JSON for the records of every hold and checkout (holds, orders,
// idempotency keys) and for the answers of POST /api/cart/items and /api/checkout.
// encoding/json's reflection was a large part of the embedded store's single writer
// goroutine, which every hold and checkout waits for. The encoders write exactly the
// bytes json.Marshal writes (same field order, omitempty, nil slices as null, HTML
// escaping, times as RFC 3339 with nanoseconds); anything unusual (a string that needs
// escaping, a time outside years 0-9999) goes through encoding/json itself. The
// decoders read the shape the encoders write and leave everything else to
// json.Unmarshal, so they accept exactly what json.Unmarshal accepts.

// appendJSONString appends s as json.Marshal encodes it: runs of bytes that need no
// escaping are copied whole (one append per run, not per byte).
func appendJSONString(b []byte, s string) []byte {
	start, rest := len(b), s
	b = append(b, '"')
	for {
		i := 0
		for i < len(rest) && jsonPlain[rest[i]] {
			i++
		}
		b = append(b, rest[:i]...)
		switch {
		case i == len(rest):
			return append(b, '"')
		case rest[i] == 0:
			b = append(b, `\u0000`...)
			rest = rest[i+1:]
		default:
			raw, _ := json.Marshal(s) // cannot fail for a string
			return append(b[:start], raw...)
		}
	}
}

// jsonPlain marks the bytes json.Marshal copies into a string as they are: printable
// ASCII but for '"', '\\' and the HTML-escaped '<', '>', '&'.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	t['"'], t['\\'], t['<'], t['>'], t['&'] = false, false, false, false, false
	return t
}()

// jsonTimeOK tells whether appendJSONTime can encode t (time.Time's MarshalJSON fails
// outside years 0-9999; callers then use encoding/json, which reports it).
func jsonTimeOK(t time.Time) bool {
	y := t.Year()
	return y >= 0 && y <= 9999
}

// appendJSONTime appends t as time.Time's MarshalJSON does, for a t that jsonTimeOK.
func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendJSONBool(b []byte, v bool) []byte {
	if v {
		return append(b, "true"...)
	}
	return append(b, "false"...)
}

// appendHoldFields appends the fields of a Hold, without braces.
func appendHoldFields(b []byte, h *Hold) []byte {
	b = append(b, `"id":`...)
	b = appendJSONString(b, h.ID)
	b = append(b, `,"stream_id":`...)
	b = appendJSONString(b, h.StreamID)
	b = append(b, `,"product_id":`...)
	b = appendJSONString(b, h.ProductID)
	if h.SaleID != "" {
		b = append(b, `,"sale_id":`...)
		b = appendJSONString(b, h.SaleID)
	}
	b = append(b, `,"quantity":`...)
	b = strconv.AppendInt(b, int64(h.Quantity), 10)
	b = append(b, `,"unit_price_cents":`...)
	b = strconv.AppendInt(b, h.UnitPriceCents, 10)
	b = append(b, `,"currency":`...)
	b = appendJSONString(b, h.Currency)
	b = append(b, `,"expires_at":`...)
	b = appendJSONTime(b, h.ExpiresAt)
	b = append(b, `,"expired":`...)
	return appendJSONBool(b, h.Expired)
}

// AppendJSON appends the hold as json.Marshal encodes it (the API's hold object). It
// returns b and false, appending nothing, when it cannot (ExpiresAt outside years
// 0-9999, which json.Marshal refuses).
func (h Hold) AppendJSON(b []byte) ([]byte, bool) {
	if !jsonTimeOK(h.ExpiresAt) {
		return b, false
	}
	b = append(b, '{')
	b = appendHoldFields(b, &h)
	return append(b, '}'), true
}

// AppendJSON appends the order as json.Marshal encodes it (the API's order object). It
// returns b and false, appending nothing, when it cannot (CreatedAt outside years
// 0-9999, which json.Marshal refuses).
func (o Order) AppendJSON(b []byte) ([]byte, bool) {
	if !jsonTimeOK(o.CreatedAt) {
		return b, false
	}
	return o.appendJSON(b), true
}

func (o *Order) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, o.ID)
	b = append(b, `,"user_id":`...)
	b = appendJSONString(b, o.UserID)
	b = append(b, `,"stream_id":`...)
	b = appendJSONString(b, o.StreamID)
	b = append(b, `,"items":`...)
	if o.Items == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, it := range o.Items {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"product_id":`...)
			b = appendJSONString(b, it.ProductID)
			if it.SaleID != "" {
				b = append(b, `,"sale_id":`...)
				b = appendJSONString(b, it.SaleID)
			}
			b = append(b, `,"quantity":`...)
			b = strconv.AppendInt(b, int64(it.Quantity), 10)
			b = append(b, `,"unit_price_cents":`...)
			b = strconv.AppendInt(b, it.UnitPriceCents, 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"total_cents":`...)
	b = strconv.AppendInt(b, o.TotalCents, 10)
	b = append(b, `,"currency":`...)
	b = appendJSONString(b, o.Currency)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, o.Status)
	b = append(b, `,"created_at":`...)
	b = appendJSONTime(b, o.CreatedAt)
	b = append(b, `,"expired_hold_ids":`...)
	if o.ExpiredHoldIDs == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, id := range o.ExpiredHoldIDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, id)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendJSON appends a boltHold as json.Marshal encodes it (Hold's fields, then the
// record's own).
func (h *boltHold) appendJSON(b []byte) []byte {
	b = append(b, '{')
	b = appendHoldFields(b, &h.Hold)
	b = append(b, `,"user":`...)
	b = appendJSONString(b, h.User)
	b = append(b, `,"released":`...)
	b = appendJSONBool(b, h.Released)
	b = append(b, `,"cart_key":`...)
	b = appendJSONString(b, h.CartKey)
	return append(b, '}')
}

func (r *boltIdem) appendJSON(b []byte) []byte {
	b = append(b, `{"fp":`...)
	b = appendJSONString(b, r.Fingerprint)
	b = append(b, `,"order_id":`...)
	b = appendJSONString(b, r.OrderID)
	b = append(b, `,"at":`...)
	b = appendJSONTime(b, r.At)
	return append(b, '}')
}

// marshalRecord encodes v as json.Marshal does, by hand for the records of holds and
// checkouts.
func marshalRecord(v any) ([]byte, error) {
	switch r := v.(type) {
	case boltHold:
		if jsonTimeOK(r.ExpiresAt) {
			return r.appendJSON(make([]byte, 0, 384)), nil
		}
	case *boltHold:
		if jsonTimeOK(r.ExpiresAt) {
			return r.appendJSON(make([]byte, 0, 384)), nil
		}
	case Order:
		if jsonTimeOK(r.CreatedAt) {
			return r.appendJSON(make([]byte, 0, 384)), nil
		}
	case boltIdem:
		if jsonTimeOK(r.At) {
			return r.appendJSON(make([]byte, 0, 160)), nil
		}
	}
	return json.Marshal(v)
}

// appendRecord appends the record v (a *boltHold, *Order or *boltIdem) as
// marshalRecord encodes it, by hand; ok is false, with b unchanged, for another type or
// a time json.Marshal refuses (the caller then uses marshalRecord).
func appendRecord(b []byte, v any) (out []byte, ok bool) {
	switch r := v.(type) {
	case *boltHold:
		if jsonTimeOK(r.ExpiresAt) {
			return r.appendJSON(b), true
		}
	case *Order:
		if jsonTimeOK(r.CreatedAt) {
			return r.appendJSON(b), true
		}
	case *boltIdem:
		if jsonTimeOK(r.At) {
			return r.appendJSON(b), true
		}
	}
	return b, false
}

// unmarshalRecord decodes raw into v as json.Unmarshal does; holds and idempotency
// records of the shape marshalRecord writes are read by hand.
func unmarshalRecord(raw []byte, v any) error {
	switch r := v.(type) {
	case *boltHold:
		if r.decodeFast(raw) {
			return nil
		}
		*r = boltHold{}
	case *boltIdem:
		if r.decodeFast(raw) {
			return nil
		}
		*r = boltIdem{}
	}
	return json.Unmarshal(raw, v)
}

// scanFlatObject calls field for each member of a JSON object with no whitespace and
// only strings, numbers and literals as values (the raw value bytes). It returns false
// when raw is not of that shape or field returns false; the caller then decodes raw
// with encoding/json instead.
func scanFlatObject(raw []byte, field func(key, val []byte) bool) bool {
	if len(raw) < 2 || raw[0] != '{' || raw[len(raw)-1] != '}' {
		return false
	}
	i, end := 1, len(raw)-1
	if i == end {
		return true
	}
	for {
		// key: a string without escapes
		if raw[i] != '"' {
			return false
		}
		j := bytes.IndexByte(raw[i+1:end], '"')
		if j < 0 {
			return false
		}
		key := raw[i+1 : i+1+j]
		if bytes.IndexByte(key, '\\') >= 0 {
			return false
		}
		i += j + 2
		if i >= end || raw[i] != ':' {
			return false
		}
		i++
		if i >= end {
			return false
		}
		// value
		start := i
		if raw[i] == '"' {
			i++
			for i < end && raw[i] != '"' {
				if raw[i] == '\\' {
					i++
				}
				i++
			}
			if i >= end {
				return false
			}
			i++ // the closing quote
		} else {
			for i < end && raw[i] != ',' {
				c := raw[i]
				if c == '"' || c == '{' || c == '[' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
					return false
				}
				i++
			}
		}
		if !field(key, raw[start:i]) {
			return false
		}
		if i == end {
			return true
		}
		if raw[i] != ',' || i+1 >= end {
			return false
		}
		i++
	}
}

// fastString decodes a JSON string value as json.Unmarshal would.
func fastString(val []byte, out *string) bool {
	if len(val) < 2 || val[0] != '"' || val[len(val)-1] != '"' {
		return false
	}
	body := val[1 : len(val)-1]
	nul := false // the only escape read by hand: \u0000 (cart keys join ids with it)
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c == '\\' && i+6 <= len(body) && string(body[i:i+6]) == `\u0000` {
			nul = true
			i += 5
			continue
		}
		if c < 0x20 || c >= utf8.RuneSelf || c == '\\' {
			// other escapes, control characters, non-ASCII: let encoding/json decide
			return json.Unmarshal(val, out) == nil
		}
	}
	if nul {
		*out = string(bytes.ReplaceAll(body, []byte(`\u0000`), []byte{0}))
	} else {
		*out = string(body)
	}
	return true
}

// fastInt decodes a JSON integer in canonical form (no leading zeros, no exponent).
func fastInt(val []byte, bits int, out *int64) bool {
	digits := val
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || (digits[0] == '0' && len(digits) > 1) {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	n, err := strconv.ParseInt(string(val), 10, bits)
	if err != nil {
		return false
	}
	*out = n
	return true
}

func fastBool(val []byte, out *bool) bool {
	switch string(val) {
	case "true":
		*out = true
	case "false":
		*out = false
	default:
		return false
	}
	return true
}

// fastTime decodes a time that appendJSONTime wrote (RFC 3339 in UTC, canonical):
// anything else is left to encoding/json.
func fastTime(val []byte, out *time.Time) bool {
	var s string
	return fastString(val, &s) && canonicalTime(s, out)
}

// canonicalTime is fastTime of the string's value.
func canonicalTime(s string, out *time.Time) bool {
	if len(s) < len("2006-01-02T15:04:05Z") || s[len(s)-1] != 'Z' {
		return false
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return false
	}
	var buf [40]byte
	if string(t.AppendFormat(buf[:0], time.RFC3339Nano)) != s {
		return false
	}
	*out = t
	return true
}

func (h *boltHold) decodeFast(raw []byte) bool {
	return h.decodeWith(raw, fastString, fastTime)
}

// decodeShared is decodeFast with one allocation for the record's strings: the plain
// ones (printable ASCII, no escape: every one the store writes for UUIDs, user ids and
// cart keys) are substrings of one copy of raw, so each keeps all of it alive. For
// records read and dropped within a call (a hold a checkout orders); a string kept
// longer must be cloned (releaseHold).
func (h *boltHold) decodeShared(raw []byte) bool {
	str := string(raw)
	// val is a slice of raw (scanFlatObject), at raw's capacity minus its own: a plain
	// one is a substring of str.
	sub := func(val []byte, out *string) bool {
		if v, ok := plainSub(str, raw, val); ok {
			*out = v
			return true
		}
		return fastString(val, out)
	}
	tm := func(val []byte, out *time.Time) bool {
		if v, ok := plainSub(str, raw, val); ok {
			return canonicalTime(v, out)
		}
		return fastTime(val, out)
	}
	return h.decodeWith(raw, sub, tm)
}

// decodeWith decodes a hold record whose string fields str decodes and whose time tm
// decodes (decodeFast, decodeShared); false leaves the record to encoding/json.
func (h *boltHold) decodeWith(raw []byte, str func(val []byte, out *string) bool, tm func(val []byte, out *time.Time) bool) bool {
	return scanFlatObject(raw, func(key, val []byte) bool {
		var n int64
		switch string(key) {
		case "id":
			return str(val, &h.ID)
		case "stream_id":
			return str(val, &h.StreamID)
		case "product_id":
			return str(val, &h.ProductID)
		case "sale_id":
			return str(val, &h.SaleID)
		case "quantity":
			if !fastInt(val, strconv.IntSize, &n) {
				return false
			}
			h.Quantity = int(n)
		case "unit_price_cents":
			return fastInt(val, 64, &h.UnitPriceCents)
		case "currency":
			return str(val, &h.Currency)
		case "expires_at":
			return tm(val, &h.ExpiresAt)
		case "expired":
			return fastBool(val, &h.Expired)
		case "user":
			return str(val, &h.User)
		case "released":
			return fastBool(val, &h.Released)
		case "cart_key":
			return str(val, &h.CartKey)
		default:
			return false
		}
		return true
	})
}

// plainSub returns the string value val (a slice of raw, whose copy is str) as a
// substring of str, when it is plain: printable ASCII without escapes, which JSON
// decodes to itself.
func plainSub(str string, raw, val []byte) (string, bool) {
	if len(val) < 2 || val[0] != '"' || val[len(val)-1] != '"' {
		return "", false
	}
	body := val[1 : len(val)-1]
	for _, c := range body {
		if c < 0x20 || c >= utf8.RuneSelf || c == '\\' {
			return "", false
		}
	}
	at := cap(raw) - cap(val) + 1
	return str[at : at+len(body)], true
}

func (r *boltIdem) decodeFast(raw []byte) bool {
	return scanFlatObject(raw, func(key, val []byte) bool {
		switch string(key) {
		case "fp":
			return fastString(val, &r.Fingerprint)
		case "order_id":
			return fastString(val, &r.OrderID)
		case "at":
			return fastTime(val, &r.At)
		}
		return false
	})
}

// DecodeFastJSON decodes the compact body a client sends for a hold
// ({"sale_id":"…","quantity":1}, keys in any order, each once, no whitespace, plain
// ASCII strings) as json.Decoder with DisallowUnknownFields would. It returns false,
// with in unspecified, for any other input (a key given twice too, which the API
// refuses): the caller then decodes raw with encoding/json, which gives its answer and
// error message.
func (in *NewItem) DecodeFastJSON(raw []byte) bool {
	var seen uint8
	once := func(bit uint8) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	return scanFlatObject(raw, func(key, val []byte) bool {
		switch string(key) {
		case "product_id":
			return once(1) && plainString(val, &in.ProductID)
		case "sale_id":
			return once(2) && saleIDString(val, &in.SaleID)
		case "quantity":
			if !once(4) {
				return false
			}
			var n int64
			if !fastInt(val, strconv.IntSize, &n) {
				return false
			}
			q := int(n)
			in.Quantity = &q
			return true
		}
		return false
	})
}

// lastSaleID is the sale id a hold's body named last (decoded by plainString).
var lastSaleID atomic.Pointer[string]

// saleIDString is plainString of a hold's sale id, which answers the string of the
// last one when the body names the same sale: a storm's holds all name it, and
// each made a string of it (a heap object per hold).
func saleIDString(val []byte, out *string) bool {
	if p := lastSaleID.Load(); p != nil && len(val) == len(*p)+2 && val[0] == '"' && val[len(val)-1] == '"' &&
		string(val[1:len(val)-1]) == *p {
		*out = *p // the same bytes, which plainString took before
		return true
	}
	if !plainString(val, out) {
		return false
	}
	id := *out
	lastSaleID.Store(&id)
	return true
}

// plainString decodes a JSON string of printable ASCII without escapes.
func plainString(val []byte, out *string) bool {
	if len(val) < 2 || val[0] != '"' || val[len(val)-1] != '"' {
		return false
	}
	body := val[1 : len(val)-1]
	for _, c := range body {
		if c < 0x20 || c >= utf8.RuneSelf || c == '\\' || c == '"' {
			return false
		}
	}
	*out = string(body)
	return true
}
