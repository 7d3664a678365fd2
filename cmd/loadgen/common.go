package main

// Helpers every mode uses: tokens, plain HTTP calls, and the CPU time and memory of a
// process read from /proc, so the modes report the same numbers the same way.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/livecart/livecart/web/auth"
)

// mintToken signs an hour-long token, longer than any run.
func mintToken(a *auth.Authenticator, role auth.Role, user, name string) (string, error) {
	return a.Mint(auth.Identity{UserID: user, Name: name, Role: role}, time.Hour)
}

// call sends one request (a JSON body when body is not empty) and returns the status
// and the whole answer.
func call(ctx context.Context, client *http.Client, method, url, token, body string, hdr map[string]string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewBufferString(body))
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// ms is a duration in milliseconds, for the report tables.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cpuTime returns the user+system CPU time of pid from /proc (0 if unknown).
func cpuTime(pid int) time.Duration {
	if pid == -1 {
		return idleTime()
	}
	if pid <= 0 {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may contain spaces) start at ") ".
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// rssBytes returns the resident set of pid in bytes from /proc (0 if unknown).
func rssBytes(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// idleTime is the idle time of all cores together (idle + iowait of /proc/stat's cpu line).
func idleTime() time.Duration {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	idle, _ := strconv.ParseInt(f[4], 10, 64)
	iow, _ := strconv.ParseInt(f[5], 10, 64)
	return time.Duration(idle+iow) * time.Second / 100
}

// joinFloats formats each of v with format and joins them with sep.
func joinFloats(v []float64, format, sep string) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, sep)
}
