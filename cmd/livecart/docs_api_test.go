package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/livecart/livecart/stream/rtctest"
	"github.com/livecart/livecart/web/auth"
)

// TestAPIDocExamplesRun pastes docs/API.md's shell examples, in the page's order, into
// bash against a real server, on each store: every request they make must succeed
// (2xx). Examples that only work out of order (a stream ended before the examples that
// use it, a sale stopped before the holds in it, a placeholder where a session's path
// goes) fail here as they fail for a person pasting them.
func TestAPIDocExamplesRun(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: docs/API.md's examples need it", tool)
		}
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "API.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, store := range []string{"embedded", "redis"} {
		t.Run(store, func(t *testing.T) {
			cfg := testConfig(t)
			if store == "redis" {
				prefix := "docs-" + uuid.NewString()[:8] + ":"
				cleanupPrefix(t, prefix)
				cfg = redisConfig(t, "redis://127.0.0.1:6379/0", prefix)
			}
			cfg.Auth.Secret = clusterSecret
			cfg.GuestTokens = true
			base := "http://" + startMain(t, "docs "+store, cfg).Addr()
			runDocExamples(t, doc, base)
		})
	}
}

// runDocExamples runs the doc's sh blocks against base in a fresh directory holding the
// offers they name, and checks every curl's status.
func runDocExamples(t *testing.T, doc []byte, base string) {
	dir := t.TempDir()
	for name, publisher := range map[string]bool{"offer.sdp": true, "viewer-offer.sdp": false} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(docOffer(t, publisher)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	script := docScript(t, doc, base)
	if err := os.WriteFile(filepath.Join(dir, "examples.sh"), []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	// Every curl also writes its status, method and URL to stderr (its -w last: it wins
	// over an example's own).
	cmd := exec.Command("bash", "-c", `curl() { command curl "$@" --max-time 20 -w '%{stderr}@@ %{http_code} %{method} %{url_effective}\n'; }; . ./examples.sh`)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("the examples did not finish within 2 min; stderr:\n%s", stderr.String())
	}
	var calls, failed []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		rest, ok := strings.CutPrefix(line, "@@ ")
		if !ok {
			continue
		}
		calls = append(calls, rest)
		if !strings.HasPrefix(rest, "2") {
			failed = append(failed, rest)
		}
	}
	if len(failed) > 0 {
		t.Errorf("got %d of %d example requests failing, want none:\n%s\nstdout:\n%s", len(failed), len(calls), strings.Join(failed, "\n"), stdout.String())
	}
	// The page's sections each run: a script that stops early makes fewer requests.
	for _, want := range []string{"PATCH " + base + "/whep/", "POST " + base + "/api/checkout", "/end"} {
		found := false
		for _, c := range calls {
			found = found || strings.Contains(c, want)
		}
		if !found {
			t.Errorf("no example request %q among the %d made:\n%s", want, len(calls), strings.Join(calls, "\n"))
		}
	}
	if len(calls) < 40 {
		t.Errorf("got %d example requests, want the page's 40 or more:\n%s", len(calls), strings.Join(calls, "\n"))
	}
}

// docTokenRe matches an example's token command: the test mints the token itself.
var docTokenRe = regexp.MustCompile(`\$\(go run \./cmd/livecart token --role (\w+) --user (\w+) --name (\w+)\)`)

// docScript returns the doc's sh blocks in order as one script against base: tokens
// minted with the test's secret, websocat and kill left out.
func docScript(t *testing.T, doc []byte, base string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(string(doc), "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			in = true
			continue
		case strings.HasPrefix(line, "```"):
			in = false
			continue
		case !in, strings.HasPrefix(line, "websocat "), strings.HasPrefix(line, "kill "):
			continue
		}
		line = strings.ReplaceAll(line, "http://127.0.0.1:8080", base)
		line = docTokenRe.ReplaceAllStringFunc(line, func(m string) string {
			f := docTokenRe.FindStringSubmatch(m)
			tok, err := auth.New([]byte(clusterSecret), nil).Mint(auth.Identity{UserID: f[2], Name: f[3], Role: auth.Role(f[1])}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		})
		b.WriteString(line + "\n")
	}
	if !strings.Contains(b.String(), "BASE="+base) {
		t.Fatalf("docs/API.md sets no BASE=http://127.0.0.1:8080 in its first example")
	}
	return b.String()
}

// docOffer is a complete offer from a pion peer: a publisher's or a viewer's.
func docOffer(t *testing.T, publisher bool) string {
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := rtctest.NewPeer(api, publisher)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	offer, err := rtctest.Offer(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	return offer
}
