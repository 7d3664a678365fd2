package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// TestMain lets up to 4 tests that call t.Parallel run at once; go test's default is
// GOMAXPROCS (2 on the CI machine). Those tests spend their seconds waiting, not on
// the CPU: for a claim's lease through a Redis outage, a dead node's rescue, a page's
// 13 s of quiet. Each has its own servers, its own key prefix or redis-server; the
// tests that count goroutines, kill Redis clients by name or bound answer times under
// a frozen Redis stay sequential (parallel tests start only after every sequential one
// has ended). A -parallel on the command line wins. It also removes the binary that
// builtBinary built.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		if err := flag.Set("test.parallel", strconv.Itoa(4)); err != nil {
			panic(err)
		}
	}
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// built is the livecart binary go build made for the tests that run it as a process:
// one build (a link of ~40 MB, seconds on the CI machine) instead of one per test.
var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// builtBinary returns the path of the livecart binary built from this package's
// source, building it on the first call; tests must not change the file.
func builtBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "livecart-test-bin-")
		if built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "livecart")
		if out, err := exec.Command("go", "build", "-o", built.bin, ".").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}
