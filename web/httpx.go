package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/live"
)

// MaxJSONBody bounds JSON request bodies (API.md: 64 KiB).
const MaxJSONBody = 64 << 10

type ctxKey int

const (
	identityKey ctxKey = iota
	bearerKey
)

// verified is what the request's bearer token verified as: who, and until when.
type verified struct {
	id    auth.Identity
	until time.Time
}

// identity returns who made the request; the zero Identity is anonymous.
func identity(r *http.Request) auth.Identity {
	v, _ := r.Context().Value(identityKey).(verified)
	return v.id
}

// identityUntil returns when the request's token expires (zero when anonymous).
func identityUntil(r *http.Request) time.Time {
	v, _ := r.Context().Value(identityKey).(verified)
	return v.until
}

// bearer returns the raw bearer token the request presented, if any.
func bearer(r *http.Request) string {
	t, _ := r.Context().Value(bearerKey).(string)
	return t
}

// requireUser returns the caller's identity, or a 401 error when anonymous.
func requireUser(r *http.Request) (auth.Identity, error) {
	id := identity(r)
	if id.Anonymous() {
		return id, apiError(http.StatusUnauthorized, "unauthorized", "sign in required")
	}
	return id, nil
}

// writeJSON writes v as JSON with the status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeHold and writeOrder write a hold's or an order's JSON as writeJSON would write
// the value (Content-Type, status, the object and a newline), encoded by hand
// (AppendJSON) in a pooled buffer, or through writeJSON when AppendJSON cannot encode it.
// For the bodies of every hold and checkout, which encoding/json's reflection made a
// visible part of a sale's cost. They take the value by pointer and box it only for
// writeJSON: a method value and an interface of the value cost two heap copies of it
// per answer.
func writeHold(w http.ResponseWriter, status int, h *cart.Hold) {
	bp := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(bp)
	b, ok := h.AppendJSON((*bp)[:0])
	if !ok {
		writeJSON(w, status, *h)
		return
	}
	writeAppended(w, status, bp, b)
}

// writeOrder: see writeHold.
func writeOrder(w http.ResponseWriter, status int, o *cart.Order) {
	bp := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(bp)
	b, ok := o.AppendJSON((*bp)[:0])
	if !ok {
		writeJSON(w, status, *o)
		return
	}
	writeAppended(w, status, bp, b)
}

// writeAppended writes b, a JSON value appended to the pooled buffer *bp, and a newline
// with the status, as writeJSON writes a value.
func writeAppended(w http.ResponseWriter, status int, bp *[]byte, b []byte) {
	b = append(b, '\n')
	if cap(b) <= 4096 {
		*bp = b // reused by the next answer (Write copies b)
	}
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// jsonContentType is the Content-Type header's value that writeAppended sets (shared,
// never changed: Header.Set would allocate it per answer).
var jsonContentType = []string{"application/json"}

// bodyBufs are the buffers of writeHold, writeOrder and readBody.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// fail writes err as an API error. 5xx are logged; unavailable carries Retry-After.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	switch {
	case ae.Status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
		s.log.Warn("unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
	case ae.Status >= 500:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	case ae.Status == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "":
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, ae.Status, map[string]any{"error": map[string]string{"code": ae.Code, "message": ae.Message}})
}

// decodeJSON strictly decodes a JSON request body into v: 415 unless the content type
// is JSON, 413 over MaxJSONBody, 400 for malformed JSON, unknown fields or trailing data.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeBody(w, r, v, false)
}

// decodeJSONOrEmpty is decodeJSON, but an empty body means {}.
func decodeJSONOrEmpty(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeBody(w, r, v, true)
}

// decodeNoFields checks the body of a request that takes no fields (ending a stream,
// stopping a sale): none or {} (what the pages send), else as decodeJSON would judge
// it: an unknown field, or anything that is not an object, is 400; over 64 KiB 413;
// not JSON's content type 415.
func decodeNoFields(w http.ResponseWriter, r *http.Request) error {
	return decodeJSONOrEmpty(w, r, &struct{}{})
}

// fastDecoder is a request body that can decode its usual compact form by hand
// (cart.NewItem); DecodeFastJSON returns false for anything else, which then goes
// through encoding/json.
type fastDecoder interface {
	DecodeFastJSON(raw []byte) bool
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	bp, raw, trimmed, err := readBody(w, r, emptyOK)
	defer putBody(bp)
	if err != nil || len(trimmed) == 0 {
		return err
	}
	if fd, ok := v.(fastDecoder); ok {
		if fd.DecodeFastJSON(trimmed) {
			return nil
		}
		reflect.ValueOf(v).Elem().SetZero() // encoding/json starts from scratch
	}
	return decodeRaw(raw, v)
}

// readBody reads a JSON request body and checks it as decodeJSON does before decoding:
// 413 over MaxJSONBody, 400 when empty (unless emptyOK: then trimmed is empty and err
// nil), 415 unless the content type is JSON and the content coding none (or identity),
// 400 when not UTF-8. trimmed is raw without
// JSON's white space around it. Both are in the pooled buffer bp, which the caller
// hands back with putBody once done with them (encoding/json and the fast decoders copy
// what they keep).
func readBody(w http.ResponseWriter, r *http.Request, emptyOK bool) (bp *[]byte, raw, trimmed []byte, err error) {
	bp = bodyBufs.Get().(*[]byte)
	if r.ContentLength > MaxJSONBody {
		// Refused unread: a client that waits for "100 Continue" (curl does above 1 MB)
		// is not asked to send it, and none is left sending while the server closes the
		// connection on it (the client may then see a reset, not the 413).
		return bp, nil, nil, errBodyTooLarge()
	}
	var body io.Reader = r.Body
	if r.ContentLength < 0 {
		// A body of a known length within the bound cannot exceed it: net/http reads no
		// more than Content-Length.
		body = http.MaxBytesReader(w, r.Body, MaxJSONBody)
	}
	raw, err = readAll(body, (*bp)[:0])
	if cap(raw) <= 4096 {
		*bp = raw[:0]
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return bp, nil, nil, errBodyTooLarge()
		}
		return bp, nil, nil, apiError(http.StatusBadRequest, "bad_request", "cannot read body")
	}
	// JSON's own white space only: bytes.TrimSpace also takes \f, \v, U+0085, U+00A0...,
	// which encoding/json rejects.
	trimmed = bytes.Trim(raw, " \t\r\n")
	if len(trimmed) == 0 {
		if emptyOK {
			return bp, raw, nil, nil
		}
		return bp, nil, nil, apiError(http.StatusBadRequest, "bad_request", "request body required")
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return bp, nil, nil, apiError(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
		}
	}
	if err := checkNoCoding(r); err != nil {
		return bp, nil, nil, err
	}
	if !live.ValidJSONText(raw) {
		// JSON is UTF-8 (RFC 8259); decoding would store U+FFFD in place of the bad bytes,
		// or of a lone surrogate escape.
		return bp, nil, nil, apiError(http.StatusBadRequest, "bad_request", "invalid JSON: the body is not valid UTF-8, or escapes a lone surrogate")
	}
	return bp, raw, trimmed, nil
}

// checkNoCoding refuses a request body with a content coding other than identity: 415.
// A compressed body is not decoded here: it would be refused as not UTF-8 (a gzip one),
// or taken as it is under a coding it does not have (RFC 9110 §8.4).
func checkNoCoding(r *http.Request) error {
	if ce := r.Header["Content-Encoding"]; len(ce) > 0 && (len(ce) > 1 || !strings.EqualFold(strings.TrimSpace(ce[0]), "identity")) {
		return apiError(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"Content-Encoding "+strings.Join(ce, ", ")+" is not supported: send the body uncompressed")
	}
	return nil
}

// errBodyTooLarge: a JSON body over MaxJSONBody (declared or read).
func errBodyTooLarge() error {
	return apiError(http.StatusRequestEntityTooLarge, "payload_too_large", fmt.Sprintf("body over %d bytes", MaxJSONBody))
}

// putBody hands a buffer of readBody back.
func putBody(bp *[]byte) { bodyBufs.Put(bp) }

// readAll is io.ReadAll appending to b.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
	}
}

// decodeRaw strictly decodes the JSON body raw (checked by readBody) into v through
// encoding/json: 400 for malformed JSON, a body that is null, unknown fields or trailing
// data.
func decodeRaw(raw []byte, v any) error {
	if string(bytes.Trim(raw, " \t\r\n")) == "null" {
		// encoding/json decodes null into a struct as nothing at all: it would pass for {}
		// (only an empty body means {}, where a route allows one).
		return apiError(http.StatusBadRequest, "bad_request", "invalid JSON: the body must be a JSON object, not null")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return apiError(http.StatusBadRequest, "bad_request", typeErrorMessage(te, v))
		}
		// Without encoding/json's "json: " (an unknown field reads as exactFieldNames says it).
		return apiError(http.StatusBadRequest, "bad_request", "invalid JSON: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return apiError(http.StatusBadRequest, "bad_request", "trailing data after JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return apiError(http.StatusBadRequest, "bad_request", "trailing data after JSON object")
	}
	return exactFieldNames(raw, v)
}

// typeErrorMessage says, in the API's words, which field of the body v decodes into had
// a value of the wrong JSON type: encoding/json's own text names Go types ("Go struct
// field NewProduct.price_cents of type int64").
func typeErrorMessage(te *json.UnmarshalTypeError, v any) string {
	if te.Field == "" {
		return "the body must be a JSON object, not " + jsonValueKind(te.Value)
	}
	// The bodies are flat objects: the field is the path's last name (encoding/json
	// puts the Go names of embedded structs before it: "fields.product_id").
	field := te.Field[strings.LastIndexByte(te.Field, '.')+1:]
	t := jsonFieldType(reflect.TypeOf(v), field)
	if t == nil {
		t = te.Type
	}
	want := jsonTypeName(t)
	number, isNumber := strings.CutPrefix(te.Value, "number ")
	switch {
	case !isNumber:
		return fmt.Sprintf("field %s must be %s", field, want)
	case want == "a whole number" && strings.Trim(number, "-0123456789") == "":
		return fmt.Sprintf("field %s is out of range: %s", field, number)
	default:
		return fmt.Sprintf("field %s must be %s, not %s", field, want, number)
	}
}

// jsonValueKind names the JSON value encoding/json's UnmarshalTypeError.Value describes
// ("number", "number 1.5", "string", "bool", "array", "object") with its article.
func jsonValueKind(value string) string {
	switch {
	case strings.HasPrefix(value, "number"):
		return "a number"
	case value == "bool":
		return "true or false"
	case value == "array" || value == "object":
		return "an " + value
	default:
		return "a " + value
	}
}

// jsonTypeName says what JSON value decodes into t ("a string", "a whole number", ...).
func jsonTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(jsonTypeName(t.Elem()), "a "), "an ") + "s"
	default:
		return "an object"
	}
}

// jsonFieldType returns the type of the field at the dotted JSON path (as encoding/json's
// UnmarshalTypeError.Field names it) within t, or nil if there is none.
func jsonFieldType(t reflect.Type, path string) reflect.Type {
	for _, name := range strings.Split(path, ".") {
		for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice) {
			t = t.Elem()
		}
		if t == nil || t.Kind() != reflect.Struct {
			return nil
		}
		t = structFieldType(t, name)
	}
	return t
}

// structFieldType returns the type of struct type t's field whose JSON name is name
// (embedded structs without a tag lend theirs), or nil.
func structFieldType(t reflect.Type, name string) reflect.Type {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case tag == "-":
		case f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct:
			if ft := structFieldType(f.Type, name); ft != nil {
				return ft
			}
		case tag == name || (tag == "" && f.IsExported() && f.Name == name):
			return f.Type
		}
	}
	return nil
}

// exactFieldNames rejects the keys of a JSON object body that name a field of v only when
// case is ignored: encoding/json takes "Title" for "title", but the API's field names are
// exact (snake_case), so another spelling is an unknown field. It also rejects a key
// given twice ({"quantity":1,"quantity":5}): encoding/json keeps the last value, another
// parser the first, so the request means what its reader chooses (RFC 8259 §4: names
// SHOULD be unique); the API refuses it, naming the key.
func exactFieldNames(raw []byte, v any) error {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	// The keys in the body's order, so that the first wrong one is named (as encoding/json
	// names the first unknown field), not one picked by a map's iteration order.
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil // not an object (null): Decode has judged it
	}
	names := jsonFieldNames(t)
	seen := make(map[string]bool, len(names))
	for dec.More() {
		tok, err := dec.Token()
		k, ok := tok.(string)
		if err != nil || !ok {
			return nil
		}
		if !names[k] {
			return apiError(http.StatusBadRequest, "bad_request", fmt.Sprintf("invalid JSON: unknown field %q", k))
		}
		if seen[k] {
			return apiError(http.StatusBadRequest, "bad_request", fmt.Sprintf("invalid JSON: duplicate field %q", k))
		}
		seen[k] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return nil
		}
	}
	return nil
}

// jsonFieldNames returns the JSON names of struct type t's fields, as encoding/json
// names them (embedded structs without a tag lend theirs).
func jsonFieldNames(t reflect.Type) map[string]bool {
	names := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for n := range jsonFieldNames(ft) {
					names[n] = true
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names[name] = true
	}
	return names
}

// pathID returns the named path value in its canonical form if it is a UUID, else a
// 404 error: an id that is not a UUID names nothing.
func pathID(r *http.Request, name string) (string, error) {
	v := r.PathValue(name)
	if !isUUID(v) {
		return "", apiError(http.StatusNotFound, "not_found", name+" names nothing")
	}
	return canonicalID(v), nil
}

// isUUID reports whether s is a UUID in its 36-character text form (either case).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

// canonicalID returns a UUID in the lowercase form ids are stored and answered in (an
// uppercase spelling names the same UUID); anything else unchanged, for the service to
// refuse.
func canonicalID(s string) string {
	if !isUUID(s) {
		return s
	}
	return strings.ToLower(s)
}

// loadStream returns the stream or a 404.
func (s *Server) loadStream(ctx context.Context, sid string) (cart.Stream, error) {
	st, err := s.deps.Store.GetStream(ctx, sid)
	if errors.Is(err, cart.ErrNotFound) {
		return st, apiError(http.StatusNotFound, "not_found", "no such stream")
	}
	return st, err
}

// canManage: the stream's owner or an admin.
func canManage(id auth.Identity, st cart.Stream) bool {
	return id.Role == auth.RoleAdmin || (id.Role == auth.RoleCreator && id.UserID == st.CreatorID)
}

// canModerate: the stream's owner, any moderator, or an admin.
func canModerate(id auth.Identity, st cart.Stream) bool {
	return canManage(id, st) || id.Role == auth.RoleModerator
}

// errForbidden is the 403 for a wrong role or foreign stream.
func errForbidden(msg string) error { return apiError(http.StatusForbidden, "forbidden", msg) }
