package stream

import (
	"flag"
	"os"
	"strconv"
	"testing"
)

// TestMain lets up to 4 tests that call t.Parallel run at once; go test's default is
// GOMAXPROCS (2 on the CI machine). Those tests spend their seconds waiting out
// timeouts (a viewer's reports cut for longer than ViewerReportTimeout, a stream
// paused for three times it), not on the CPU. Each has its own relays; the tests that
// count goroutines or measure packet batching stay sequential (parallel tests start
// only after every sequential one has ended). A -parallel on the command line wins.
func TestMain(m *testing.M) {
	parallelDefault(4)
	os.Exit(m.Run())
}

// parallelDefault sets -test.parallel to n unless the command line set it.
func parallelDefault(n int) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		if err := flag.Set("test.parallel", strconv.Itoa(n)); err != nil {
			panic(err)
		}
	}
}
