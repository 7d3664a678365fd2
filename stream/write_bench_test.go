package stream

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/livecart/livecart/stream/rtctest"
)

// BenchmarkViewerWrite writes video packets to real pion viewers through the relay's
// per-viewer path, on the benchmark's goroutine: rewrite, the send log, pion's
// interceptor, SRTP, mux and ICE layers, and the send batcher's queue. It reports the
// heap allocations per packet per viewer made under (*viewer).write, counted exactly
// from the heap profile (the pion viewers receiving in this process are not counted),
// and the time per packet per viewer (which includes the batcher's sends and the
// viewers' receiving on the other cores: indicative only).
//
//	go test -run X -bench ViewerWrite -benchtime 20000x ./stream/
func BenchmarkViewerWrite(b *testing.B) {
	const nViewers = 4
	r, err := New(Options{ListenIP: "127.0.0.1"})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	a, err := rtctest.NewAPI()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < nViewers; i++ {
		v, err := rtctest.NewViewer(a, false)
		if err != nil {
			b.Fatal(err)
		}
		defer v.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err = v.Connect(ctx, func(ctx context.Context, offer string) (string, error) {
			ans, _, err := r.Subscribe(ctx, "bench", offer)
			return ans, err
		})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
	rm := r.existingRoom("bench")
	var vs []*viewer
	deadline := time.Now().Add(10 * time.Second)
	for len(vs) < nViewers {
		vs = vs[:0]
		for _, v := range *rm.viewerList.Load() {
			if t := v.tracks[kindVideo]; t != nil && t.active.Load() && t.binding.Load() != nil {
				vs = append(vs, v)
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d viewers bound", len(vs), nViewers)
		}
		time.Sleep(10 * time.Millisecond)
	}
	codec := &codecInfo{mime: "video/vp8", clock: 90000}
	payload := make([]byte, 1100)
	payload[0] = 0x10 // VP8 descriptor: start of partition

	const marker = "stream.(*viewer).write"
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()
	before, beforeBytes := heapUnder(marker)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := time.Now()
		pk := &packet{kind: kindVideo, hdr: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(i/3) * 3000,
			Marker: i%3 == 2}, payload: payload, codec: codec, gen: 1, at: now}
		rm.hist[kindVideo].put(pk)
		for _, v := range vs {
			v.write(entry{p: pk, rebase: i == 0, at: now}, nil)
		}
	}
	b.StopTimer()
	after, afterBytes := heapUnder(marker)
	perPkt := float64(b.N * len(vs))
	b.ReportMetric(float64(after-before)/perPkt, "allocs/pkt/viewer")
	b.ReportMetric(float64(afterBytes-beforeBytes)/perPkt, "B/pkt/viewer")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/perPkt, "ns/pkt/viewer")
}

// heapUnder sums the allocations (objects, and bytes since the profile started
// counting) whose stack passes through a function named with marker.
func heapUnder(marker string) (objects, bytes int64) {
	runtime.GC()
	runtime.GC()
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		n, ok = runtime.MemProfile(recs, true)
		if ok {
			recs = recs[:n]
			break
		}
	}
	for _, rec := range recs {
		frames := runtime.CallersFrames(rec.Stack())
		for {
			f, more := frames.Next()
			if strings.Contains(f.Function, marker) {
				objects += rec.AllocObjects
				bytes += rec.AllocBytes
				break
			}
			if !more {
				break
			}
		}
	}
	return objects, bytes
}
