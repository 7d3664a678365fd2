package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFloorPercent(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name        string
		floor, scan uint64
		configured  int
		want        int
	}{
		{"floor above GOGC's headroom", 64 * mib, 16 * mib, 100, 400},
		{"rounded up", 64 * mib, 48 * mib, 100, 134},
		{"headroom above the floor: configured", 64 * mib, 80 * mib, 100, 100},
		{"never below a higher configured", 64 * mib, 32 * mib, 300, 300},
		{"nearly empty heap: capped", 64 * mib, 1 * mib, 100, maxFloorPercent},
		{"nothing scanned yet: capped", 64 * mib, 0, 100, maxFloorPercent},
		{"configured above the cap", 64 * mib, 1 * mib, 2000, 2000},
		{"no floor (no request in flight)", 0, 1 * mib, 100, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := floorPercent(c.floor, c.scan, c.configured); got != c.want {
				t.Fatalf("floorPercent(%d MiB, %d MiB, %d) = %d, want %d", c.floor/mib, c.scan/mib, c.configured, got, c.want)
			}
		})
	}
}

// gcFloorReport is what the child process of TestGCFloor measured.
type gcFloorReport struct {
	Cycles uint64 // collections during the allocation load
	// After the load, with 16 MiB live: the heap goal, the live heap, GOGC.
	Goal, Live, GOGC uint64
	// After keeping 96 MiB live, more than the floor: GOGC and the goal.
	BigGOGC, BigGoal, BigLive, BigScan uint64
}

const (
	// gcFloorChildEnv is "MAXMIB,REQUESTS" (the floor's bound and the requests in
	// flight it sees); the child runs when set.
	gcFloorChildEnv = "LIVECART_TEST_GCFLOOR_CHILD"
	gcFloorTestMiB  = 64
)

// TestGCFloor runs one allocation load (512 MiB in 64 KiB pieces, 16 MiB kept live)
// without the floor, with a 64 MiB one and 1,024 requests in flight (64 MiB of floor),
// and with none in flight, each in a child process (GOGC is the process's and this
// package's tests run in parallel), and checks what the floor is for: far fewer
// collections, a goal at least live + floor while GOGC's would be less, GOGC back to the
// configured 100 once the live heap is above the floor, and nothing when idle.
func TestGCFloor(t *testing.T) {
	if os.Getenv(gcFloorChildEnv) != "" {
		t.Skip("the child process runs TestGCFloorChild only")
	}
	off := runGCFloorChild(t, 0, 0)
	on := runGCFloorChild(t, gcFloorTestMiB, gcFloorTestMiB<<20/floorPerRequest)
	idle := runGCFloorChild(t, gcFloorTestMiB, 0)
	t.Logf("off:  %+v", off)
	t.Logf("on:   %+v", on)
	t.Logf("idle: %+v", idle)
	const floor = gcFloorTestMiB << 20
	if off.Cycles == 0 || on.Cycles*2 >= off.Cycles {
		t.Errorf("collections during the load: %d with the floor, %d without; want fewer than half", on.Cycles, off.Cycles)
	}
	if on.Cycles*2 >= idle.Cycles || idle.GOGC != 100 {
		t.Errorf("with no request in flight: %d collections (%d with 1,024), GOGC %d; want the configured 100's", idle.Cycles, on.Cycles, idle.GOGC)
	}
	if on.Goal < on.Live+floor {
		t.Errorf("with the floor: goal %d, want at least live %d + floor %d", on.Goal, on.Live, floor)
	}
	if off.Goal >= off.Live+floor {
		t.Errorf("without the floor: goal %d ≥ live %d + %d: the load does not show the floor", off.Goal, off.Live, floor)
	}
	if on.GOGC <= 100 || off.GOGC != 100 {
		t.Errorf("GOGC with 16 MiB live: %d with the floor, %d without; want above 100, 100", on.GOGC, off.GOGC)
	}
	if on.BigGOGC != 100 {
		t.Errorf("GOGC with 96 MiB live and a 64 MiB floor: %d, want the configured 100", on.BigGOGC)
	}
	if want := on.BigLive + on.BigScan; on.BigGoal != want {
		t.Errorf("goal with 96 MiB live and a 64 MiB floor: %d, want GOGC 100's %d (live %d + scanned %d)", on.BigGoal, want, on.BigLive, on.BigScan)
	}
}

func runGCFloorChild(t *testing.T, floorMiB, requests int) gcFloorReport {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestGCFloorChild$", "-test.count=1", "-test.v")
	// One P: the collector's pacing follows the allocation closely, so the counts
	// repeat (23 and 7–8 in five runs; with two Ps 17–20 and 6–8, and 10 once).
	cmd.Env = append(os.Environ(), gcFloorChildEnv+"="+strconv.Itoa(floorMiB)+","+strconv.Itoa(requests), "GOGC=100", "GOMEMLIMIT=off", "GOMAXPROCS=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child with floor %d MiB: %v\n%s", floorMiB, err, out)
	}
	const mark = "gcfloor-report: "
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, mark); ok {
			var r gcFloorReport
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				t.Fatal(err)
			}
			return r
		}
	}
	t.Fatalf("child with floor %d MiB printed no report:\n%s", floorMiB, out)
	return gcFloorReport{}
}

// TestGCFloorChild is TestGCFloor's child process: it does nothing in a plain run.
func TestGCFloorChild(t *testing.T) {
	v := os.Getenv(gcFloorChildEnv)
	if v == "" {
		t.Skip("run by TestGCFloor")
	}
	maxPart, reqPart, _ := strings.Cut(v, ",")
	floorMiB, err1 := strconv.Atoi(maxPart)
	requests, err2 := strconv.Atoi(reqPart)
	if err1 != nil || err2 != nil {
		t.Fatalf("%s=%q: want MAXMIB,REQUESTS", gcFloorChildEnv, v)
	}
	f := startGCFloor(uint64(floorMiB)<<20, func() int { return requests })
	if (f == nil) != (floorMiB == 0) {
		t.Fatalf("startGCFloor(%d MiB) = %v", floorMiB, f)
	}
	defer f.stop()

	live := retain(16 << 20)
	settleGC(t, f)
	c0 := readMetric("/gc/cycles/total:gc-cycles")
	var ring [8][]byte // the last few pieces stay reachable a moment, as a request's do
	for i := 0; i < 512<<20/(64<<10); i++ {
		ring[i%len(ring)] = make([]byte, 64<<10)
	}
	r := gcFloorReport{Cycles: readMetric("/gc/cycles/total:gc-cycles") - c0}
	ring = [8][]byte{}
	settleGC(t, f)
	r.Goal, r.Live, r.GOGC = readMetric("/gc/heap/goal:bytes"), readMetric("/gc/heap/live:bytes"), readMetric("/gc/gogc:percent")

	big := retain(96 << 20)
	settleGC(t, f)
	r.BigGOGC, r.BigGoal, r.BigLive = readMetric("/gc/gogc:percent"), readMetric("/gc/heap/goal:bytes"), readMetric("/gc/heap/live:bytes")
	r.BigScan = r.BigLive + readMetric("/gc/scan/stack:bytes") + readMetric("/gc/scan/globals:bytes")
	runtime.KeepAlive(live)
	runtime.KeepAlive(big)
	b, _ := json.Marshal(r)
	os.Stdout.WriteString("gcfloor-report: " + string(b) + "\n")
}

// retain allocates n bytes in 64 KiB pieces that the caller keeps live.
func retain(n int) [][]byte {
	var pieces [][]byte
	for i := 0; i < n/(64<<10); i++ {
		pieces = append(pieces, make([]byte, 64<<10))
	}
	return pieces
}

// settleGC runs two collections and, with a floor, waits for its tuning after each, so
// the goal read next is the one the floor set for what is live now.
func settleGC(t *testing.T, f *gcFloor) {
	t.Helper()
	for range 2 {
		var n uint64
		if f != nil {
			n = f.tuned.Load()
		}
		runtime.GC()
		// The cleanup goroutine runs the tuning; a bound, not a timing.
		for deadline := time.Now().Add(time.Minute); f != nil && f.tuned.Load() == n; {
			if time.Now().After(deadline) {
				t.Fatal("no tuning within a minute of a collection")
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func readMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
