// Command livecart is the live-stream shopping server: `livecart` serves on the
// embedded default; `livecart --config FILE` reads YAML; `livecart token ...` mints a
// bearer token.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if err := run(os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "livecart:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string) error {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], getenv, os.Stdout)
	}
	path, err := parseServeFlags(args)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(path, getenv)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	m, err := NewMain(ctx, cfg, os.Stdout)
	if err != nil {
		return err
	}
	// Process-wide (GOGC is the process's), so here and not in NewMain.
	floor := startGCFloor(uint64(cfg.GC.HeapFloorMiB)<<20, m.web.InFlight)
	defer floor.stop()
	m.log.Info("gc heap floor", "max_mib", cfg.GC.HeapFloorMiB, "kib_per_request", floorPerRequest>>10, "on", floor != nil)
	err = m.Run(ctx)
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
