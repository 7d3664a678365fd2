package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// The collector's heap floor (gc.heap_floor_mib): while the live heap is small, GOGC's
// goal (live + 100 % of it) makes the collector run every few MB allocated, and each
// cycle's cost is mostly fixed (scanning the stacks of the parked handlers and of the
// connections' goroutines). In a sale storm the live heap is ~18 MB, so a cycle ran
// every ~20 MB allocated, ~1.25 µs per KB a request allocated (docs/BENCHMARKS.md). A
// process-wide higher GOGC would also multiply the heap of 10,000 websocket
// connections, which has a target of its own; a floor does not: the next goal is
// max(GOGC's goal, live + floor), so once GOGC's own headroom exceeds the floor the
// collector runs as configured.
//
// The runtime has no such setting, so after every cycle gcFloor sets GOGC (which the
// runtime applies to its goal at once) to the percent that gives live + floor: the
// pacer's goal is live + (live + stacks + globals scanned) × GOGC/100, and the
// runtime/metrics below are those three inputs as the last cycle left them.

// defaultHeapFloorMiB is gc.heap_floor_mib's default.
const defaultHeapFloorMiB = 0

// maxFloorPercent caps the GOGC the floor sets (when the heap is nearly empty, as at
// start): a goal of at most 11 times what the last cycle scanned. It also bounds the
// goal of the one cycle that ends before the next tuning, which still uses the percent
// set for the cycle before it.
const maxFloorPercent = 1000

// gcFloorMetrics are the pacer's inputs: the heap marked live by the last cycle and the
// stack and globals bytes it scanned.
var gcFloorMetrics = [...]string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes"}

// gcFloor keeps the collector's next heap goal at least floor bytes above the live heap
// by setting GOGC after every cycle. One per process (GOGC is the process's): main's
// run starts it.
type gcFloor struct {
	floor      uint64
	configured int // the GOGC the process started with: the floor never sets less
	// samples and set are used by the cleanup goroutine only, one cycle at a time.
	samples []metrics.Sample
	set     int
	stopped atomic.Bool
	tuned   atomic.Uint64 // cycles tuned, for tests
	percent atomic.Int64  // the GOGC last set, for tests
}

// gcSentinel is the garbage whose cleanup marks the end of a cycle: 32 bytes, so not a
// tiny allocation (whose cleanup may never run), and allocated anew for every cycle.
type gcSentinel [4]uintptr

// startGCFloor starts the floor of floor bytes; it returns nil (nothing started) when
// floor is 0 or the collector is off (GOGC=off), where a floor has no meaning.
func startGCFloor(floor uint64) *gcFloor {
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gogc)
	configured := gogc[0].Value.Uint64() // GOGC=off reads as uint64(-1)
	if floor == 0 || configured > math.MaxInt32 {
		return nil
	}
	f := &gcFloor{floor: floor, configured: int(configured), set: int(configured)}
	f.percent.Store(int64(configured))
	for _, name := range gcFloorMetrics {
		f.samples = append(f.samples, metrics.Sample{Name: name})
	}
	f.tune() // the first goal already, from the cycle before start (if any)
	f.arm()
	return f
}

func (f *gcFloor) arm() {
	runtime.AddCleanup(new(gcSentinel), func(f *gcFloor) {
		if f.stopped.Load() {
			return
		}
		f.tune()
		f.arm()
	}, f)
}

// tune sets GOGC for the goal the last cycle's figures give.
func (f *gcFloor) tune() {
	metrics.Read(f.samples)
	live := f.samples[0].Value.Uint64()
	scan := live + f.samples[1].Value.Uint64() + f.samples[2].Value.Uint64()
	if p := floorPercent(f.floor, scan, f.configured); p != f.set {
		debug.SetGCPercent(p)
		f.set = p
		f.percent.Store(int64(p))
	}
	f.tuned.Add(1)
}

// stop ends the tuning and sets the configured GOGC back. A cleanup already running may
// still set one more; a server stops it only at exit, tests wait for none.
func (f *gcFloor) stop() {
	if f == nil {
		return
	}
	f.stopped.Store(true)
	debug.SetGCPercent(f.configured)
}

// floorPercent is the GOGC that makes the pacer's goal, live + scan × GOGC/100, at least
// live + floor: never below the configured percent, at most maxFloorPercent (unless the
// configured one is higher).
func floorPercent(floor, scan uint64, configured int) int {
	if scan == 0 {
		return max(configured, maxFloorPercent)
	}
	p := (floor*100 + scan - 1) / scan // floor ≤ 1 TiB, so no overflow
	if p > maxFloorPercent {
		p = maxFloorPercent
	}
	return max(configured, int(p))
}
