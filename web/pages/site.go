package pages

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// CSP is the Content-Security-Policy of every page and asset: no inline script or
// style, media only from this origin (or MediaStreams), product images from anywhere
// over https, and no framing.
const CSP = "default-src 'self'; img-src 'self' data: https:; media-src 'self' blob:; " +
	"connect-src 'self' ws: wss:; script-src 'self'; style-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Page names accepted by Site.Page.
const (
	PageIndex    = "index"
	PageWatch    = "watch"
	PageStudio   = "studio"
	PageModerate = "moderate"
)

// Options shape what the pages offer.
type Options struct {
	// GuestTokens lets a visitor of the watch page pick a display name and get a
	// viewer token (POST /api/guest).
	GuestTokens bool
}

// file is one embedded file ready to serve: its bytes, type and strong ETag.
type file struct {
	name  string
	body  []byte
	ctype string
	etag  string
}

// Site serves the page shells and their assets from the embedded files. It is
// immutable after New and safe for concurrent use.
type Site struct {
	files map[string]file // "static/js/watch.js" → file
}

const guestMeta = `<meta name="livecart-guest" content="off">`

// New reads the embedded files once, applying opts to the page shells.
func New(opts Options) (*Site, error) {
	s := &Site{files: map[string]file{}}
	err := fs.WalkDir(Files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(Files, p)
		if err != nil {
			return err
		}
		if opts.GuestTokens && strings.HasSuffix(p, ".html") {
			body = bytes.ReplaceAll(body, []byte(guestMeta), []byte(`<meta name="livecart-guest" content="on">`))
		}
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = http.DetectContentType(body)
		}
		sum := sha256.Sum256(body)
		s.files[p] = file{name: p, body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pages: reading embedded files: %w", err)
	}
	for _, name := range []string{PageIndex, PageWatch, PageStudio, PageModerate} {
		if _, ok := s.files["static/"+name+".html"]; !ok {
			return nil, fmt.Errorf("pages: missing page %s.html", name)
		}
	}
	return s, nil
}

// SetSecurityHeaders sets the headers every page and asset carries.
func SetSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Permissions-Policy", "camera=(self), microphone=(self), autoplay=(self)")
}

// Page returns the handler of one page shell. The shell is the same for every stream
// id: the page's script reads the id from the address.
func (s *Site) Page(name string) http.Handler {
	f, ok := s.files["static/"+name+".html"]
	if !ok {
		panic("pages: unknown page " + name) // a wiring mistake, found at start-up
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sid := r.PathValue("sid"); name != PageIndex && !validID(sid) {
			http.Error(w, "404 page not found", http.StatusNotFound)
			return
		}
		serve(w, r, f, "no-cache")
	})
}

// Static serves /static/... (the request path keeps its /static/ prefix). Assets are
// revalidated on each load (cheap 304s by ETag) so a new binary is picked up at once.
func (s *Site) Static() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		f, ok := s.files[p]
		if !ok || !strings.HasPrefix(p, "static/") || strings.HasSuffix(p, ".html") {
			http.NotFound(w, r)
			return
		}
		serve(w, r, f, "no-cache")
	})
}

func serve(w http.ResponseWriter, r *http.Request, f file, cache string) {
	h := w.Header()
	SetSecurityHeaders(h)
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", cache)
	h.Set("ETag", f.etag)
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}

// validID reports whether s looks like a UUID (8-4-4-4-12 hex digits).
func validID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
