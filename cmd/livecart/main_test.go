package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livecart/livecart/web/auth"
)

// TestServeAndSIGTERM builds the real binary, starts it with no config on a temp data
// dir, checks the banner links and health endpoints, then SIGTERMs it: exit 0.
func TestServeAndSIGTERM(t *testing.T) {
	bin := builtBinary(t)
	dir := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LIVECART_ADDR=127.0.0.1:0", "LIVECART_UDP_PORT="+strconv.Itoa(freeUDPPort(t)), "LIVECART_AUTH_SECRET=")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	links := map[string]string{} // studio, watch, moderate → URL
	var studio string
	var addr string
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	addrRe := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)
	deadline := time.After(30 * time.Second)
	for len(links) < 3 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("server exited before printing links")
			}
			if m := addrRe.FindStringSubmatch(l); m != nil {
				addr = m[1]
			}
			if f := strings.Fields(l); len(f) == 2 && (f[0] == "studio" || f[0] == "watch" || f[0] == "moderate") {
				links[f[0]] = f[1]
			}
		case <-deadline:
			t.Fatalf("got links %v within 30 s, want studio, watch and moderate", links)
		}
	}
	studio = links["studio"]
	go func() {
		for range lines {
		}
	}()
	if !strings.HasPrefix(studio, "http://"+addr+"/studio/") || !strings.Contains(studio, "?token=") {
		t.Fatalf("got studio link %q, want http://%s/studio/<id>?token=...", studio, addr)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "secret")); err != nil {
		t.Fatalf("secret not created in data dir: %v", err)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get("http://" + addr + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: got %d, want 200", p, resp.StatusCode)
		}
	}
	// The printed stream is listed.
	resp, err := http.Get("http://" + addr + "/api/streams")
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list) != 1 || !strings.Contains(studio, list[0]["id"].(string)) {
		t.Fatalf("got streams %v, want the banner's stream", list)
	}
	sid := list[0]["id"].(string)
	// The links' tokens work: the studio's is the stream's owner (it sees the stream
	// key), the moderator's reads the audit log, the viewer's may not.
	token := func(link string) string {
		_, tok, _ := strings.Cut(link, "?token=")
		return tok
	}
	get := func(path, tok string) (int, map[string]any) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	for name, want := range map[string]string{"studio": "/studio/", "watch": "/watch/", "moderate": "/moderate/"} {
		if !strings.HasPrefix(links[name], "http://"+addr+want+sid+"?token=") {
			t.Fatalf("%s link: got %q, want http://%s%s%s?token=...", name, links[name], addr, want, sid)
		}
	}
	if code, st := get("/api/streams/"+sid, token(studio)); code != 200 || st["stream_key"] == nil {
		t.Fatalf("studio token: got %d %v, want the stream with its key", code, st)
	}
	if code, _ := get("/api/streams/"+sid+"/audit", token(links["moderate"])); code != 200 {
		t.Fatalf("moderate token reading the audit: got %d, want 200", code)
	}
	if code, _ := get("/api/streams/"+sid+"/audit", token(links["watch"])); code != 403 {
		t.Fatalf("watch token reading the audit: got %d, want 403 (a viewer)", code)
	}
	// livecart token mints with the secret the first start created in the data dir.
	var minted bytes.Buffer
	if err := runToken([]string{"--role", "creator", "--user", "creator-1"}, env(map[string]string{"LIVECART_DATA_DIR": filepath.Join(dir, "data")}), &minted); err != nil {
		t.Fatal(err)
	}
	if code, st := get("/api/streams/"+sid, strings.TrimSpace(minted.String())); code != 200 || st["stream_key"] == nil {
		t.Fatalf("token minted from the data dir's secret: got %d %v, want the owner's view", code, st)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("got exit %v after SIGTERM, want 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("server did not exit within 20 s of SIGTERM")
	}
}

func TestTokenSubcommand(t *testing.T) {
	var out bytes.Buffer
	e := env(map[string]string{"LIVECART_AUTH_SECRET": "0123456789abcdef0123"})
	if err := runToken([]string{"--role", "moderator", "--user", "mia", "--name", "Mia", "--ttl", "1h"}, e, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.TrimSpace(out.String()), "."); n != 2 {
		t.Fatalf("got %q, want a JWT", out.String())
	}
	a := auth.New([]byte("0123456789abcdef0123"), nil)
	id, err := a.Verify(strings.TrimSpace(out.String()))
	if err != nil || id != (auth.Identity{UserID: "mia", Name: "Mia", Role: auth.RoleModerator}) {
		t.Fatalf("minted token: got %+v %v, want mia/Mia/moderator", id, err)
	}
	// --ttl sets exp: a token of 1ms is expired by the time it is checked.
	out.Reset()
	if err := runToken([]string{"--role", "creator", "--user", "carl", "--ttl", "1ms"}, e, &out); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // exp has whole seconds
	if _, err := a.Verify(strings.TrimSpace(out.String())); err == nil {
		t.Fatal("a token minted with --ttl 1ms still verifies after 1.1 s")
	}
	// --name defaults to the user id.
	out.Reset()
	if err := runToken([]string{"--role", "viewer", "--user", "vic"}, e, &out); err != nil {
		t.Fatal(err)
	}
	if id, err := a.Verify(strings.TrimSpace(out.String())); err != nil || id.Name != "vic" || id.Role != auth.RoleViewer {
		t.Fatalf("default name: got %+v %v, want vic/vic/viewer", id, err)
	}
	if err := runToken([]string{"--role", "king", "--user", "x"}, e, io.Discard); err == nil {
		t.Fatal("got no error for role king")
	}
	if err := runToken([]string{"--role", "viewer"}, e, io.Discard); err == nil {
		t.Fatal("got no error without --user")
	}
}

// An unquoted display name (--name Ann Lee) ends flag parsing at "Lee": the flags after it
// were silently dropped, so `--user ann --name Ann Lee --role admin` printed a viewer
// token and exit 0. Any argument left over is now refused and nothing is printed.
func TestTokenSubcommandRefusesStrayArguments(t *testing.T) {
	e := env(map[string]string{"LIVECART_AUTH_SECRET": "0123456789abcdef0123"})
	for _, args := range [][]string{
		{"--user", "ann", "--name", "Ann", "Lee", "--role", "admin"},
		{"--role", "admin", "--user", "ann", "extra"},
	} {
		var out bytes.Buffer
		err := runToken(args, e, &out)
		if err == nil || !strings.Contains(err.Error(), "unexpected argument") {
			t.Errorf("%q: got error %v and output %q, want an unexpected argument error", args, err, out.String())
		}
		if out.Len() != 0 {
			t.Errorf("%q: printed %q, want no token", args, out.String())
		}
	}
}
