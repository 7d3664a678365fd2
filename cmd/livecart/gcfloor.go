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
// connections' goroutines). In a sale storm of 1,000 buyers the live heap is ~18 MB, so
// a cycle ran every ~20 MB allocated, ~1.25 µs per KB a request allocated
// (docs/BENCHMARKS.md). A process-wide higher GOGC would also multiply the heap of
// 10,000 websocket connections and of the media relay, which have targets of their
// own; so would a fixed floor (64 MiB: +2 KiB per connection, +0.1 MiB per viewer of
// 200). This floor is floorPerRequest for each HTTP request in flight (websockets not
// counted, so neither the live channel nor the relay's RTP raises it), at most
// gc.heap_floor_mib, and the next goal is max(GOGC's goal, live + floor): the
// collector runs as configured once GOGC's own headroom is larger, and when idle.
//
// The runtime has no such setting, so after every cycle gcFloor sets GOGC (which the
// runtime applies to its goal at once) to the percent that gives live + floor: the
// pacer's goal is live + (live + stacks + globals scanned) × GOGC/100, and the
// runtime/metrics below are those three inputs as the last cycle left them.

// defaultHeapFloorMiB is gc.heap_floor_mib's default.
const defaultHeapFloorMiB = 64

// floorPerRequest is the floor for each HTTP request in flight: ~5 times the ~13 KB a
// parked sale request keeps live (62–70 MB at 5,000 buyers), so 1,000 parked buyers
// give a 62.5 MiB floor, ~3.3 times GOGC's headroom there.
const floorPerRequest = 64 << 10

// maxFloorPercent caps the GOGC the floor sets (when the heap is nearly empty, as at
// start): a goal of at most 11 times what the last cycle scanned. It also bounds the
// goal of the one cycle that ends before the next tuning, which still uses the percent
// set for the cycle before it.
const maxFloorPercent = 1000

// gcFloorMetrics are the pacer's inputs: the heap marked live by the last cycle and the
// stack and globals bytes it scanned.
var gcFloorMetrics = [...]string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes"}

// gcFloor keeps the collector's next heap goal at least the floor above the live heap
// by setting GOGC after every cycle: floorPerRequest × load(), at most maxFloor. One per
// process (GOGC is the process's): main's run starts it.
type gcFloor struct {
	maxFloor   uint64
	load       func() int // the HTTP requests in flight
	configured int        // the GOGC the process started with: the floor never sets less
	// samples and set are used by the cleanup goroutine only, one cycle at a time.
	samples []metrics.Sample
	set     int
	stopped atomic.Bool
	tuned   atomic.Uint64 // cycles tuned, for tests
}

// gcSentinel is the garbage whose cleanup marks the end of a cycle: 32 bytes, so not a
// tiny allocation (whose cleanup may never run), and allocated anew for every cycle.
type gcSentinel [4]uintptr

// startGCFloor starts the floor of floorPerRequest per request in flight (load), at
// most maxFloor bytes; it returns nil (nothing started) when maxFloor is 0 or the
// collector is off (GOGC=off), where a floor has no meaning.
func startGCFloor(maxFloor uint64, load func() int) *gcFloor {
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gogc)
	configured := gogc[0].Value.Uint64() // GOGC=off reads as uint64(-1)
	if maxFloor == 0 || configured > math.MaxInt32 {
		return nil
	}
	f := &gcFloor{maxFloor: maxFloor, load: load, configured: int(configured), set: int(configured)}
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
	floor := min(f.maxFloor, uint64(max(f.load(), 0))*floorPerRequest)
	if p := floorPercent(floor, scan, f.configured); p != f.set {
		debug.SetGCPercent(p)
		f.set = p
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
	if floor == 0 {
		return configured
	}
	if scan == 0 {
		return max(configured, maxFloorPercent)
	}
	p := (floor*100 + scan - 1) / scan // floor ≤ 1 TiB, so no overflow
	if p > maxFloorPercent {
		p = maxFloorPercent
	}
	return max(configured, int(p))
}
