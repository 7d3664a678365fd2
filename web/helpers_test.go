package web

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web/auth"
)

// testEnv is a real Server on a real bbolt store behind an httptest server on loopback.
type testEnv struct {
	t     *testing.T
	srv   *httptest.Server
	auth  *auth.Authenticator
	store cart.Store
	web   *Server
}

// newTestEnv starts a server; tweak may adjust the Deps before it is built.
func newTestEnv(t *testing.T, tweak ...func(*Deps)) *testEnv {
	t.Helper()
	store, err := cart.OpenBolt(filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	a := auth.New([]byte("test-secret-0123456789"), nil)
	deps := Deps{Store: store, Auth: a}
	for _, f := range tweak {
		f(&deps)
	}
	s := New(deps)
	t.Cleanup(s.Close) // no leave retried on the closed store (a relay closed after it)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &testEnv{t: t, srv: srv, auth: a, store: store, web: s}
}

// token mints a token for user with role.
func (e *testEnv) token(role auth.Role, user string) string {
	e.t.Helper()
	tok, err := e.auth.Mint(auth.Identity{UserID: user, Name: user, Role: role}, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// do sends a request; body may be nil, a string (sent as is) or a value (sent as JSON).
func (e *testEnv) do(method, path, token string, body any) (*http.Response, []byte) {
	e.t.Helper()
	return e.doHeaders(method, path, token, body)
}

// doHeaders is do with extra headers (name, value, ...).
func (e *testEnv) doHeaders(method, path, token string, body any, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, ct = bytes.NewBufferString(b), "application/json"
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd, ct = bytes.NewReader(raw), "application/json"
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// expect checks the status and, for errors, the API code; it decodes a 2xx body into out.
func (e *testEnv) expect(resp *http.Response, raw []byte, status int, code string, out any) {
	e.t.Helper()
	if resp.StatusCode != status {
		e.t.Fatalf("%s %s: got status %d, want %d; body %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, raw)
	}
	if code != "" {
		var er struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(raw, &er); err != nil || er.Error.Code != code {
			e.t.Fatalf("%s %s: got body %s, want error code %q", resp.Request.Method, resp.Request.URL.Path, raw, code)
		}
		if er.Error.Message == "" {
			e.t.Fatalf("%s %s: error without message: %s", resp.Request.Method, resp.Request.URL.Path, raw)
		}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("decode %s: %v", raw, err)
		}
	}
}

// createStream makes a stream owned by creator and returns it.
func (e *testEnv) createStream(creator string) StreamView {
	e.t.Helper()
	var st StreamView
	resp, raw := e.do("POST", "/api/streams", e.token(auth.RoleCreator, creator), map[string]string{"title": "test stream"})
	e.expect(resp, raw, http.StatusCreated, "", &st)
	return st
}
