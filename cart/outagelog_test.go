package cart

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestOutageLogLogsOncePerInterval(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	o := NewOutageLog(slog.New(slog.NewTextHandler(&buf, nil)), "sweep", 10*time.Second, func() time.Time { return now })
	down := errors.New("connection refused")
	for range 100 { // 100 ms apart for 10 s, as a retry loop does
		o.Fail(down)
		now = now.Add(100 * time.Millisecond)
	}
	o.Fail(down) // 10 s after the first logged one
	now = now.Add(time.Second)
	o.OK()
	o.OK()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("101 failures over 10 s and a recovery logged %d lines, want 3 (first failure, one after the interval, recovery):\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "not_logged=0") || !strings.Contains(lines[1], "not_logged=99") || !strings.Contains(lines[1], "failing_for=10s") {
		t.Errorf("failure lines do not count what they left out:\n%s", buf.String())
	}
	if !strings.Contains(lines[2], "works again") || !strings.Contains(lines[2], "failed_for=11s") {
		t.Errorf("recovery line = %q, want works again after 11s", lines[2])
	}
	buf.Reset()
	o.Fail(down)
	if !strings.Contains(buf.String(), "not_logged=0") || !strings.Contains(buf.String(), "failing_for=0s") {
		t.Errorf("a new outage after recovery is not logged at once: %q", buf.String())
	}
}
