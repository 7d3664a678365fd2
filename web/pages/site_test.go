package pages

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

const testSID = "0b4f3c9e-6a1d-4c1e-9c55-3f0d2f6b7a11"

func testMux(t *testing.T, opts Options) *http.ServeMux {
	t.Helper()
	site, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", site.Page(PageIndex))
	mux.Handle("GET /watch/{sid}", site.Page(PageWatch))
	mux.Handle("GET /studio/{sid}", site.Page(PageStudio))
	mux.Handle("GET /moderate/{sid}", site.Page(PageModerate))
	mux.Handle("GET /static/", site.Static())
	return mux
}

func get(mux http.Handler, path string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	return rec
}

func TestRoutes(t *testing.T) {
	mux := testMux(t, Options{})
	tests := []struct {
		path     string
		status   int
		ctype    string
		contains string
	}{
		{"/", 200, "text/html", "/static/js/home.js"},
		{"/watch/" + testSID, 200, "text/html", "/static/js/watch.js"},
		{"/studio/" + testSID, 200, "text/html", "/static/js/studio.js"},
		{"/moderate/" + testSID, 200, "text/html", "/static/js/moderate.js"},
		{"/watch/not-a-uuid", 404, "", ""},
		{"/static/js/watch.js", 200, "javascript", "WhepPlayer"},
		{"/static/css/app.css", 200, "text/css", ".player"},
		{"/static/watch.html", 404, "", ""},
		{"/static/js/nope.js", 404, "", ""},
		{"/static/pages.go", 404, "", ""},
	}
	for _, tt := range tests {
		rec := get(mux, tt.path, nil)
		if rec.Code != tt.status {
			t.Errorf("GET %s: got status %d, want %d", tt.path, rec.Code, tt.status)
			continue
		}
		if tt.status != 200 {
			continue
		}
		if got := rec.Header().Get("Content-Type"); !strings.Contains(got, tt.ctype) {
			t.Errorf("GET %s: got Content-Type %q, want it to contain %q", tt.path, got, tt.ctype)
		}
		if got := rec.Header().Get("Content-Security-Policy"); got != CSP {
			t.Errorf("GET %s: got CSP %q, want %q", tt.path, got, CSP)
		}
		if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: got X-Content-Type-Options %q, want nosniff", tt.path, got)
		}
		if !strings.Contains(rec.Body.String(), tt.contains) {
			t.Errorf("GET %s: body lacks %q", tt.path, tt.contains)
		}
	}
}

func TestETagRevalidation(t *testing.T) {
	mux := testMux(t, Options{})
	first := get(mux, "/static/js/util.js", nil)
	etag := first.Header().Get("ETag")
	if etag == "" || first.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("got ETag %q and Cache-Control %q, want an ETag and no-cache", etag, first.Header().Get("Cache-Control"))
	}
	again := get(mux, "/static/js/util.js", map[string]string{"If-None-Match": etag})
	if again.Code != http.StatusNotModified {
		t.Errorf("revalidation: got status %d, want 304", again.Code)
	}
}

func TestGuestSwitch(t *testing.T) {
	for _, tt := range []struct {
		on   bool
		want string
	}{
		{false, `<meta name="livecart-guest" content="off">`},
		{true, `<meta name="livecart-guest" content="on">`},
	} {
		body := get(testMux(t, Options{GuestTokens: tt.on}), "/watch/"+testSID, nil).Body.String()
		if !strings.Contains(body, tt.want) {
			t.Errorf("GuestTokens=%v: page lacks %s", tt.on, tt.want)
		}
	}
}

// TestAssetsHaveNoRemoteOrInline keeps the pages loadable under the CSP: no inline
// scripts, style attributes or handler attributes, nothing from another origin, and no
// HTML built from strings in the scripts.
func TestAssetsHaveNoRemoteOrInline(t *testing.T) {
	scriptTag := regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`)
	forbidden := []*regexp.Regexp{
		regexp.MustCompile(`(?i)\sstyle\s*=`),
		regexp.MustCompile(`(?i)<style`),
		regexp.MustCompile(`(?i)\son[a-z]+\s*=\s*["']`),
		regexp.MustCompile(`(?i)(src|href)\s*=\s*["'](https?:)?//`),
		regexp.MustCompile(`(?i)javascript:`),
	}
	jsForbidden := []*regexp.Regexp{
		regexp.MustCompile(`\.innerHTML\s*=`),
		regexp.MustCompile(`\beval\(`),
		regexp.MustCompile(`new Function\(`),
		regexp.MustCompile(`setAttribute\(\s*['"]style`),
		regexp.MustCompile(`(?i)import\s[^;]*from\s+['"]https?:`),
	}
	err := fs.WalkDir(Files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(Files, p)
		text := string(b)
		switch {
		case strings.HasSuffix(p, ".html"):
			for _, m := range scriptTag.FindAllStringSubmatch(text, -1) {
				if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
					t.Errorf("%s: inline script %q", p, m[0])
				}
			}
			for _, re := range forbidden {
				if loc := re.FindStringIndex(text); loc != nil {
					t.Errorf("%s: got %q, want none (CSP)", p, text[loc[0]:loc[1]])
				}
			}
		case strings.HasSuffix(p, ".js"):
			for _, re := range jsForbidden {
				if loc := re.FindStringIndex(text); loc != nil {
					t.Errorf("%s: got %q, want none (CSP, XSS)", p, text[loc[0]:loc[1]])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestValidID(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{testSID, true},
		{strings.ToUpper(testSID), true},
		{"", false},
		{"0b4f3c9e6a1d4c1e9c553f0d2f6b7a11xxxx", false},
		{"0b4f3c9e-6a1d-4c1e-9c55-3f0d2f6b7a1g", false},
	} {
		if got := validID(tt.in); got != tt.want {
			t.Errorf("validID(%q): got %v, want %v", tt.in, got, tt.want)
		}
	}
}
