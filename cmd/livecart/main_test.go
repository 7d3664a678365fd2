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
)

// TestServeAndSIGTERM builds the real binary, starts it with no config on a temp data
// dir, checks the banner links and health endpoints, then SIGTERMs it: exit 0.
func TestServeAndSIGTERM(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "livecart")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
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
	for studio == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("server exited before printing links")
			}
			if m := addrRe.FindStringSubmatch(l); m != nil {
				addr = m[1]
			}
			if f := strings.Fields(l); len(f) == 2 && f[0] == "studio" {
				studio = f[1]
			}
		case <-deadline:
			t.Fatal("no studio link within 30 s")
		}
	}
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
	if err := runToken([]string{"--role", "king", "--user", "x"}, e, io.Discard); err == nil {
		t.Fatal("got no error for role king")
	}
	if err := runToken([]string{"--role", "viewer"}, e, io.Discard); err == nil {
		t.Fatal("got no error without --user")
	}
}
