//go:build unix

package main

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// TestPerfCtl: -perfctl parses target/kind=CTL:ACK, and perfCtl writes enable and
// disable to the fifos of that target's storms of that kind only, each answered by an
// ack, as perf stat --control fifo:CTL,ACK does.
func TestPerfCtl(t *testing.T) {
	dir := t.TempDir()
	ctl, ack := filepath.Join(dir, "ctl"), filepath.Join(dir, "ack")
	for _, p := range []string{ctl, ack} {
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := parseSaleFlags([]string{"-secret", "x", "-perfctl", "a/sale=" + ctl + ":" + ack, "-cpu", "a/loadgen=self"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.ctl) != 1 || cfg.ctl[0] != (ctlWatch{"a", "sale", ctl, ack}) {
		t.Fatalf("ctl %+v", cfg.ctl)
	}
	if len(cfg.cpu) != 1 || cfg.cpu[0].pid != os.Getpid() {
		t.Fatalf("cpu %+v", cfg.cpu)
	}
	for _, bad := range []string{"a=" + ctl + ":" + ack, "a/other=" + ctl + ":" + ack, "a/sale=" + ctl} {
		if _, err := parseSaleFlags([]string{"-secret", "x", "-perfctl", bad}); err == nil {
			t.Errorf("-perfctl %q accepted", bad)
		}
	}
	// perf's side: read commands, answer each with an ack.
	got := make(chan []string)
	go func() {
		c, err := os.Open(ctl)
		if err != nil {
			t.Error(err)
			got <- nil
			return
		}
		defer c.Close()
		a, err := os.OpenFile(ack, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			got <- nil
			return
		}
		defer a.Close()
		var cmds []string
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			cmds = append(cmds, sc.Text())
			a.WriteString("ack\n")
		}
		got <- cmds
	}()
	for _, step := range []struct{ target, kind, cmd string }{
		{"a", "noop", "enable"}, {"b", "sale", "enable"}, // not this fifo's
		{"a", "sale", "enable"}, {"a", "sale", "disable"}, {"a", "sale", "enable"},
	} {
		if err := perfCtl(cfg, step.target, step.kind, step.cmd); err != nil {
			t.Fatal(err)
		}
	}
	cfg.ctlFiles[ctl].Close()
	cfg.ctlFiles[ack].Close()
	if cmds := <-got; !slices.Equal(cmds, []string{"enable", "disable", "enable"}) {
		t.Errorf("perf got %q, want enable, disable, enable", cmds)
	}
}
