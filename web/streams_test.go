package web

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
)

func TestCreateAndGetStream(t *testing.T) {
	e := newTestEnv(t)
	st := e.createStream("alice")
	if st.Status != "idle" || st.CreatorID != "alice" || st.StreamKey == "" {
		t.Fatalf("got %+v, want idle stream of alice with a key", st)
	}
	if st.WHIPURL != "/whip/"+st.ID || st.WHEPURL != "/whep/"+st.ID || st.WSURL != "/ws/"+st.ID {
		t.Fatalf("got urls %q %q %q, want paths", st.WHIPURL, st.WHEPURL, st.WSURL)
	}
	if st.StartedAt != nil || st.EndedAt != nil {
		t.Fatalf("got started_at %v ended_at %v, want null", st.StartedAt, st.EndedAt)
	}

	// stream_key: only for the owner and admins.
	for _, c := range []struct {
		name, token string
		wantKey     bool
	}{
		{"anonymous", "", false},
		{"viewer", e.token(auth.RoleViewer, "bob"), false},
		{"other creator", e.token(auth.RoleCreator, "carol"), false},
		{"moderator", e.token(auth.RoleModerator, "mia"), false},
		{"owner", e.token(auth.RoleCreator, "alice"), true},
		{"admin", e.token(auth.RoleAdmin, "root"), true},
	} {
		resp, raw := e.do("GET", "/api/streams/"+st.ID, c.token, nil)
		var got map[string]any
		e.expect(resp, raw, http.StatusOK, "", &got)
		_, hasKey := got["stream_key"]
		if hasKey != c.wantKey {
			t.Errorf("%s: got stream_key present=%v, want %v", c.name, hasKey, c.wantKey)
		}
		if got["started_at"] != nil {
			t.Errorf("%s: got started_at %v, want null", c.name, got["started_at"])
		}
	}

	resp, raw := e.do("GET", "/api/streams", "", nil)
	var list []StreamView
	e.expect(resp, raw, http.StatusOK, "", &list)
	if len(list) != 1 || list[0].ID != st.ID {
		t.Fatalf("got list %+v, want the one stream", list)
	}
}

func TestPublicURLMakesAbsoluteURLs(t *testing.T) {
	e := newTestEnv(t, func(d *Deps) { d.Options.PublicURL = "https://live.example.com/" })
	st := e.createStream("alice")
	if st.WHIPURL != "https://live.example.com/whip/"+st.ID || st.WSURL != "wss://live.example.com/ws/"+st.ID {
		t.Fatalf("got %q and %q, want absolute URLs", st.WHIPURL, st.WSURL)
	}
}

func TestStreamErrors(t *testing.T) {
	e := newTestEnv(t)
	st := e.createStream("alice")
	creator := e.token(auth.RoleCreator, "alice")
	expired, _ := e.auth.Mint(auth.Identity{UserID: "x", Role: auth.RoleCreator}, 1)
	foreign, _ := auth.New([]byte("another-secret-0123456789"), nil).Mint(auth.Identity{UserID: "alice", Role: auth.RoleCreator}, 3600e9)
	cases := []struct {
		name, method, path, token string
		body                      any
		status                    int
		code                      string
	}{
		{"anonymous create", "POST", "/api/streams", "", map[string]string{"title": "x"}, 401, "unauthorized"},
		{"malformed token", "POST", "/api/streams", "not-a-jwt", map[string]string{"title": "x"}, 401, "unauthorized"},
		{"expired token", "GET", "/api/streams", expired, nil, 401, "unauthorized"},
		{"foreign-signed token", "GET", "/api/streams", foreign, nil, 401, "unauthorized"},
		{"viewer create", "POST", "/api/streams", e.token(auth.RoleViewer, "bob"), map[string]string{"title": "x"}, 403, "forbidden"},
		{"moderator create", "POST", "/api/streams", e.token(auth.RoleModerator, "mia"), map[string]string{"title": "x"}, 403, "forbidden"},
		{"empty title", "POST", "/api/streams", creator, map[string]string{"title": "  "}, 400, "bad_request"},
		{"long title", "POST", "/api/streams", creator, map[string]string{"title": strings.Repeat("é", 201)}, 400, "bad_request"},
		{"unknown field", "POST", "/api/streams", creator, `{"title":"x","color":"red"}`, 400, "bad_request"},
		{"field name in another case", "POST", "/api/streams", creator, `{"Title":"x"}`, 400, "bad_request"},
		{"not json", "POST", "/api/streams", creator, `{"title":`, 400, "bad_request"},
		{"not utf-8", "POST", "/api/streams", creator, "{\"title\":\"bad \xff here\"}", 400, "bad_request"},
		{"control character in title", "POST", "/api/streams", creator, `{"title":"drop\u0007"}`, 400, "bad_request"},
		{"line break in title", "POST", "/api/streams", creator, `{"title":"two\nlines"}`, 400, "bad_request"},
		{"lone surrogate escape", "POST", "/api/streams", creator, `{"title":"bad \ud800 here"}`, 400, "bad_request"},
		{"lone low surrogate escape", "POST", "/api/streams", creator, `{"title":"bad \udc00\ud83d"}`, 400, "bad_request"},
		{"trailing data", "POST", "/api/streams", creator, `{"title":"x"} {}`, 400, "bad_request"},
		{"huge body", "POST", "/api/streams", creator, `{"title":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "payload_too_large"},
		{"not a uuid", "GET", "/api/streams/nope", "", nil, 404, "not_found"},
		{"unknown stream", "GET", "/api/streams/7b0e4f4e-1c1a-4c39-9b5c-6d1c1c1c1c1c", "", nil, 404, "not_found"},
		{"end unknown before role", "POST", "/api/streams/7b0e4f4e-1c1a-4c39-9b5c-6d1c1c1c1c1c/end", e.token(auth.RoleViewer, "bob"), nil, 404, "not_found"},
		{"viewer end", "POST", "/api/streams/" + st.ID + "/end", e.token(auth.RoleViewer, "bob"), nil, 403, "forbidden"},
		{"other creator end", "POST", "/api/streams/" + st.ID + "/end", e.token(auth.RoleCreator, "carol"), nil, 403, "forbidden"},
		{"anonymous end", "POST", "/api/streams/" + st.ID + "/end", "", nil, 401, "unauthorized"},
		{"viewer audit", "GET", "/api/streams/" + st.ID + "/audit", e.token(auth.RoleViewer, "bob"), nil, 403, "forbidden"},
		{"unknown api path", "GET", "/api/nothing", "", nil, 404, "not_found"},
		{"unknown api path, other method", "DELETE", "/api/nothing", "", nil, 404, "not_found"},
		{"wrong method", "DELETE", "/api/streams", creator, nil, 405, "method_not_allowed"},
		{"wrong method on a stream", "PUT", "/api/streams/" + st.ID, creator, nil, 405, "method_not_allowed"},
		{"wrong method on a WHIP endpoint", "GET", "/whip/" + st.ID, "", nil, 405, "method_not_allowed"},
		{"wrong method on a WHEP session", "GET", "/whep/" + st.ID + "/abc", "", nil, 405, "method_not_allowed"},
		{"wrong method on the live channel", "POST", "/ws/" + st.ID, "", nil, 405, "method_not_allowed"},
		{"wrong method on healthz", "POST", "/healthz", "", nil, 405, "method_not_allowed"},
		{"wrong method on readyz", "POST", "/readyz", "", nil, 405, "method_not_allowed"},
		{"wrong method on metrics", "DELETE", "/metrics", "", nil, 405, "method_not_allowed"},
		{"WHIP without a stream", "POST", "/whip/", creator, nil, 404, "not_found"},
		{"WHEP without a stream", "GET", "/whep/", "", nil, 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, raw := e.do(c.method, c.path, c.token, c.body)
			e.expect(resp, raw, c.status, c.code, nil)
		})
	}
}

// TestStreamTitleEscapes: a surrogate pair escape is the character it names, and an
// escaped backslash before "u" is text, not an escape: both are stored as sent.
func TestStreamTitleEscapes(t *testing.T) {
	e := newTestEnv(t)
	var st struct {
		Title string `json:"title"`
	}
	resp, raw := e.do("POST", "/api/streams", e.token(auth.RoleCreator, "alice"), `{"title":"\ud83d\ude00 \\ud800"}`)
	e.expect(resp, raw, http.StatusCreated, "", &st)
	if want := "\U0001F600 \\ud800"; st.Title != want {
		t.Errorf("title: got %q, want %q", st.Title, want)
	}
}

// TestEmptyPathSegmentIsNotFound: an API path with an empty id ("/api/streams//end") is
// an id that is not a UUID: 404 not_found in the API's shape (401 first when anonymous
// and the request needs a token), not net/http's redirect to the cleaned path, which
// names another endpoint.
func TestEmptyPathSegmentIsNotFound(t *testing.T) {
	e := newTestEnv(t)
	st := e.createStream("alice")
	viewer := e.token(auth.RoleViewer, "bob")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct {
		method, path, token string
		status              int
		code                string
	}{
		{"POST", "/api/streams//end", viewer, 404, "not_found"},
		{"GET", "/api/streams//products", "", 404, "not_found"},
		{"POST", "/api/sales//stop", viewer, 404, "not_found"},
		{"DELETE", "/api/streams/" + st.ID + "/pins//", viewer, 404, "not_found"},
		{"POST", "/whep//", "", 404, "not_found"},
		{"GET", "/ws//", "", 404, "not_found"},
		{"GET", "/api/streams/" + st.ID + "/./products", "", 404, "not_found"},
		{"GET", "/api", "", 404, "not_found"},
		{"POST", "/api/streams//end", "", 401, "unauthorized"},
	} {
		req, err := http.NewRequest(c.method, e.srv.URL+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body struct {
			Error struct{ Code, Message string }
		}
		if resp.StatusCode != c.status || json.Unmarshal(raw, &body) != nil || body.Error.Code != c.code {
			t.Errorf("%s %s: got %d %s, want %d %s", c.method, c.path, resp.StatusCode, raw, c.status, c.code)
		}
	}
}

func TestMethodNotAllowedNamesTheMethods(t *testing.T) {
	e := newTestEnv(t)
	resp, raw := e.do("PATCH", "/api/streams", e.token(auth.RoleCreator, "alice"), nil)
	e.expect(resp, raw, 405, "method_not_allowed", nil)
	// HEAD with GET (the mux answers it), OPTIONS (answered below): RFC 9110's Allow.
	if got, want := resp.Header.Get("Allow"), "GET, HEAD, POST, OPTIONS"; got != want {
		t.Errorf("got Allow %q, want %q", got, want)
	}
	st := e.createStream("alice")
	resp, raw = e.do("GET", "/whip/"+st.ID, "", nil)
	e.expect(resp, raw, 405, "method_not_allowed", nil)
	if got, want := resp.Header.Get("Allow"), "POST, OPTIONS"; got != want {
		t.Errorf("WHIP: got Allow %q, want %q", got, want)
	}
	resp, raw = e.do("HEAD", "/api/checkout", "", nil)
	if resp.StatusCode != 405 || len(raw) != 0 || resp.Header.Get("Allow") != "POST, OPTIONS" {
		t.Errorf("HEAD /api/checkout: got %d Allow %q body %q, want 405 Allow \"POST, OPTIONS\" and no body",
			resp.StatusCode, resp.Header.Get("Allow"), raw)
	}
}

// TestOptionsNamesTheMethods: a plain OPTIONS (no CORS preflight) on a path of the API
// answers 204 with Allow, as WHIP and WHEP do theirs (RFC 9110 §9.3.7), not 405 "OPTIONS
// is not allowed here" on the paths whose preflights are answered; a path with no route
// stays 404.
func TestOptionsNamesTheMethods(t *testing.T) {
	e := newTestEnv(t)
	st := e.createStream("alice")
	for _, c := range []struct{ path, allow string }{
		{"/api/streams", "GET, HEAD, POST, OPTIONS"},
		{"/api/streams/" + st.ID, "GET, HEAD, OPTIONS"},
		{"/api/checkout", "POST, OPTIONS"},
		{"/api/cart/items/" + st.ID, "DELETE, OPTIONS"},
		{"/api/products/" + st.ID, "GET, HEAD, PATCH, OPTIONS"},
		{"/healthz", "GET, HEAD, OPTIONS"},
		{"/metrics", "GET, HEAD, OPTIONS"},
		{"/ws/" + st.ID, "GET, HEAD, OPTIONS"},
		{"/whip/" + st.ID, "POST, OPTIONS"},
	} {
		resp, raw := e.do("OPTIONS", c.path, "", nil)
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Allow") != c.allow || len(raw) != 0 {
			t.Errorf("OPTIONS %s: got %d Allow %q body %s, want 204 Allow %q", c.path, resp.StatusCode,
				resp.Header.Get("Allow"), raw, c.allow)
		}
	}
	resp, raw := e.do("OPTIONS", "/api/nothing", "", nil)
	e.expect(resp, raw, 404, "not_found", nil)
	// A preflight is still CORS's answer.
	resp, raw = e.doHeaders("OPTIONS", "/api/streams", "", nil, "Origin", "https://shop.example",
		"Access-Control-Request-Method", "POST")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" {
		t.Errorf("preflight: got %d %v %s", resp.StatusCode, resp.Header, raw)
	}
}

func TestWrongContentType(t *testing.T) {
	e := newTestEnv(t)
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/streams", strings.NewReader(`{"title":"x"}`))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer "+e.token(auth.RoleCreator, "alice"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("got %d, want 415", resp.StatusCode)
	}
}

func TestEndStream(t *testing.T) {
	e := newTestEnv(t)
	st := e.createStream("alice")
	mod := e.token(auth.RoleModerator, "mia")
	var ended StreamView
	resp, raw := e.do("POST", "/api/streams/"+st.ID+"/end", mod, nil)
	e.expect(resp, raw, http.StatusOK, "", &ended)
	if ended.Status != "ended" || ended.EndedAt == nil {
		t.Fatalf("got %+v, want ended with ended_at", ended)
	}
	// Ending again is 200 and unchanged.
	var again StreamView
	resp, raw = e.do("POST", "/api/streams/"+st.ID+"/end", e.token(auth.RoleCreator, "alice"), nil)
	e.expect(resp, raw, http.StatusOK, "", &again)
	if !again.EndedAt.Equal(*ended.EndedAt) {
		t.Fatalf("got ended_at %v, want unchanged %v", again.EndedAt, ended.EndedAt)
	}
	// Ended streams are not listed but can still be read.
	resp, raw = e.do("GET", "/api/streams", "", nil)
	var list []StreamView
	e.expect(resp, raw, http.StatusOK, "", &list)
	if len(list) != 0 {
		t.Fatalf("got %d listed, want 0", len(list))
	}
	resp, raw = e.do("GET", "/api/streams/"+st.ID, "", nil)
	e.expect(resp, raw, http.StatusOK, "", nil)
	// The end is audited once.
	var audit []map[string]any
	resp, raw = e.do("GET", "/api/streams/"+st.ID+"/audit", mod, nil)
	e.expect(resp, raw, http.StatusOK, "", &audit)
	if len(audit) != 1 || audit[0]["action"] != "stream_end" || audit[0]["actor_id"] != "mia" || audit[0]["target"] != st.ID {
		t.Fatalf("got audit %v, want one stream_end by mia", audit)
	}
}

func TestCORSPreflight(t *testing.T) {
	e := newTestEnv(t)
	req, _ := http.NewRequest("OPTIONS", e.srv.URL+"/api/cart/items", nil)
	req.Header.Set("Origin", "https://shop.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("got %d, want 204", resp.StatusCode)
	}
	allow := resp.Header.Get("Access-Control-Allow-Headers")
	for _, h := range []string{"Authorization", "Content-Type", "Idempotency-Key", "If-Match"} {
		if !strings.Contains(allow, h) {
			t.Errorf("Allow-Headers %q lacks %s", allow, h)
		}
	}
	expose := resp.Header.Get("Access-Control-Expose-Headers")
	for _, h := range []string{"Location", "ETag", "Link"} {
		if !strings.Contains(expose, h) {
			t.Errorf("Expose-Headers %q lacks %s", expose, h)
		}
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	e := newTestEnv(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, raw := e.do("GET", p, "", nil)
		e.expect(resp, raw, http.StatusOK, "", nil)
	}
	// They need no token: a probe that sends a stale one is not refused.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, raw := e.do("GET", p, "expired-or-garbage", nil)
		e.expect(resp, raw, http.StatusOK, "", nil)
	}
	e.do("GET", "/api/streams", "", nil)
	resp, raw := e.do("GET", "/metrics", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(raw), `livecart_http_requests_total{code="200",route="GET /api/streams"}`) {
		t.Fatalf("metrics lack the request counter: %s", raw)
	}
	// A closed store makes /readyz 503, with the API's error body.
	e.store.Close()
	resp, raw = e.do("GET", "/readyz", "", nil)
	if resp.Header.Get("Retry-After") == "" {
		t.Fatalf("got no Retry-After on %d %s", resp.StatusCode, raw)
	}
	e.expect(resp, raw, http.StatusServiceUnavailable, "unavailable", nil)
	var body struct{ Status string }
	if err := json.Unmarshal(raw, &body); err != nil || body.Status != "unavailable" {
		t.Fatalf("got body %s, want status unavailable", raw)
	}
}

// TestAuthorizationScheme: the scheme of Authorization is case-insensitive (RFC 9110
// §11.1); any other scheme is 401, and so are two Authorization headers.
func TestAuthorizationScheme(t *testing.T) {
	e := newTestEnv(t)
	tok := e.token(auth.RoleCreator, "alice")
	for _, tc := range []struct {
		header string
		status int
		msg    string // in the error's message
	}{
		{"Bearer " + tok, http.StatusCreated, ""},
		{"bearer " + tok, http.StatusCreated, ""},
		{"BEARER  " + tok, http.StatusCreated, ""},
		{"Basic YWxpY2U6eA==", http.StatusUnauthorized, "must be Bearer"},
		{"Bearer not-a-jwt", http.StatusUnauthorized, "invalid token"},
		// "Bearer $TOKEN" with TOKEN unset (the header's trailing space is not sent).
		{"Bearer", http.StatusUnauthorized, "token is empty"},
		{"Bearer   ", http.StatusUnauthorized, "token is empty"},
	} {
		req, _ := http.NewRequest("POST", e.srv.URL+"/api/streams", strings.NewReader(`{"title":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", tc.header)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(raw), tc.msg) {
			t.Errorf("Authorization %.12q…: got %d %s, want %d with %q", tc.header, resp.StatusCode, raw, tc.status, tc.msg)
		}
	}
	// Two Authorization headers (a proxy adding its own): 401, not the first one taken
	// (alice's stream was created), on a read that needs no token too.
	viewer := e.token(auth.RoleViewer, "bob")
	for _, c := range []struct{ method, path, body string }{{"POST", "/api/streams", `{"title":"x"}`}, {"GET", "/api/streams", ""}} {
		req, _ := http.NewRequest(c.method, e.srv.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Add("Authorization", "Bearer "+tok)
		req.Header.Add("Authorization", "Bearer "+viewer)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(raw), "more than one Authorization header") {
			t.Errorf("%s %s with two Authorization headers: got %d %s, want 401", c.method, c.path, resp.StatusCode, raw)
		}
	}
}

// TestCORSConfiguredOrigins: with http.cors_origins set, only those origins get CORS
// headers (preflight and actual requests, errors included); others get none.
func TestCORSConfiguredOrigins(t *testing.T) {
	e := newTestEnv(t, func(d *Deps) { d.Options.CORSOrigins = []string{"https://shop.example"} })
	send := func(method, origin string) *http.Response {
		req, _ := http.NewRequest(method, e.srv.URL+"/api/cart", nil)
		req.Header.Set("Origin", origin)
		if method == "OPTIONS" {
			req.Header.Set("Access-Control-Request-Method", "GET")
			req.Header.Set("Access-Control-Request-Headers", "authorization")
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := send("OPTIONS", "https://SHOP.example"); resp.StatusCode != http.StatusNoContent ||
		resp.Header.Get("Access-Control-Allow-Origin") != "https://SHOP.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight from the allowed origin: got %d %v", resp.StatusCode, resp.Header)
	}
	// The 401 of an anonymous GET /api/cart is readable by the allowed origin.
	if resp := send("GET", "https://shop.example"); resp.StatusCode != http.StatusUnauthorized ||
		resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Errorf("GET from the allowed origin: got %d %v", resp.StatusCode, resp.Header)
	}
	for _, m := range []string{"OPTIONS", "GET"} {
		if resp := send(m, "https://evil.example"); resp.Header.Get("Access-Control-Allow-Origin") != "" ||
			resp.Header.Get("Access-Control-Allow-Headers") != "" {
			t.Errorf("%s from another origin: got CORS headers %v", m, resp.Header)
		}
	}
	// A preflight from another origin is refused as such (not 405, as if the path took
	// no preflight), on the API and on WHIP/WHEP alike.
	st := e.createStream("alice")
	for _, path := range []string{"/api/checkout", "/whip/" + st.ID, "/whep/" + st.ID} {
		req, _ := http.NewRequest("OPTIONS", e.srv.URL+path, nil)
		req.Header.Set("Origin", "https://evil.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		e.expect(resp, raw, http.StatusForbidden, "forbidden", nil)
		if !strings.Contains(string(raw), "cors_origins") {
			t.Errorf("preflight of %s from another origin: got %s, want a message naming http.cors_origins", path, raw)
		}
	}
}

// TestBodylessPostsDecodeStrictly: ending a stream and stopping a sale take no fields.
// No body or {} (what the pages send) is fine; a body with a field (every field is
// unknown there), or that is not a JSON object, is 400, over 64 KiB 413, another content
// type 415, as for every other JSON body, and the refused request ends nothing.
func TestBodylessPostsDecodeStrictly(t *testing.T) {
	e := newTestEnv(t)
	sh := e.shop()
	owner := e.token(auth.RoleCreator, "alice")
	for _, path := range []string{"/api/sales/" + sh.sale.ID + "/stop", "/api/streams/" + sh.st.ID + "/end"} {
		for _, c := range []struct {
			name, body, ct string
			status         int
			code           string
		}{
			{"a field", `{"reason":"spam"}`, "application/json", 400, "bad_request"},
			{"an array", `[]`, "application/json", 400, "bad_request"},
			{"not json", `end it`, "application/json", 400, "bad_request"},
			{"huge", `{"x":"` + strings.Repeat("a", 70<<10) + `"}`, "application/json", 413, "payload_too_large"},
			{"another content type", `{}`, "text/plain", 415, "unsupported_media_type"},
		} {
			resp, raw := e.doHeaders("POST", path, owner, c.body, "Content-Type", c.ct)
			if resp.StatusCode != c.status || !strings.Contains(string(raw), `"code":"`+c.code+`"`) {
				t.Errorf("POST %s with %s: got %d %s, want %d %s", path, c.name, resp.StatusCode, raw, c.status, c.code)
			}
		}
		var sale cart.Sale
		resp, raw := e.do("GET", "/api/sales/"+sh.sale.ID, "", nil)
		e.expect(resp, raw, http.StatusOK, "", &sale)
		var st cart.Stream
		resp, raw = e.do("GET", "/api/streams/"+sh.st.ID, "", nil)
		e.expect(resp, raw, http.StatusOK, "", &st)
		if sale.Status == cart.SaleEnded || st.Status == cart.StreamEnded {
			t.Fatalf("after refused requests to %s: sale %s, stream %s; want neither ended", path, sale.Status, st.Status)
		}
	}
	for _, body := range []any{"{}", nil} {
		for _, path := range []string{"/api/sales/" + sh.sale.ID + "/stop", "/api/streams/" + sh.st.ID + "/end"} {
			resp, raw := e.do("POST", path, owner, body)
			e.expect(resp, raw, http.StatusOK, "", nil)
		}
	}
}
