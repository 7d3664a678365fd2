package live

import (
	"flag"
	"os"
	"strconv"
	"testing"
)

// TestMain lets up to 4 tests that call t.Parallel run at once; go test's default is
// GOMAXPROCS (2 on the CI machine). Those tests spend their seconds waiting, not on
// the CPU: for a rescue's StockRescueAfter, a frozen or cut Redis of their own, a
// comparison's second. Each has its own hub, its own key prefix or redis-server, and
// counts no goroutines (the tests that do stay sequential: parallel tests start only
// after every sequential one has ended). A -parallel on the command line wins.
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
