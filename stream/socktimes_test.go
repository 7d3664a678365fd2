package stream

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/livecart/livecart/stream/rtctest"
)

// A viewer whose API keeps socket times (the load generator's) also measures each
// stamped packet's arrival at its socket, found by the local side of its ICE pair: every
// packet it reads has one, after the publisher's stamp and before the viewer's read.
// Closing the viewer forgets its sockets.
func TestViewerSocketTimes(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("socket receive times are Linux only")
	}
	r, _ := newTestRelay(t, Options{})
	times := rtctest.NewSocketTimes()
	a, err := rtctest.NewAPIWithOptions(rtctest.APIOptions{GRO: true, SocketTimes: times})
	if err != nil {
		t.Fatal(err)
	}
	sid := "socktimes"
	startPublisher(t, r, sid)
	v, _ := startViewerWithOptions(t, a, rtctest.ViewerOptions{KeepLatency: true, SocketTimes: times}, r, sid)
	v.Stats() // drop the samples before recording starts
	v.Record()
	var lat, sock []int32 // each Stats hands its samples over
	waitFor(t, slow(10*time.Second), "100 video packets", func() bool {
		s := v.Stats()
		lat, sock = append(lat, s.LatencyMicros...), append(sock, s.SockLatencyMicros...)
		return s.Video.Packets >= 100
	})
	recs := v.Recorded()
	s := v.Stats()
	lat, sock = append(lat, s.LatencyMicros...), append(sock, s.SockLatencyMicros...)
	if len(recs) < 50 {
		t.Fatalf("%d stamped packets recorded, want 50 at least", len(recs))
	}
	missing := 0
	for _, a := range recs {
		sent := a.At - a.Latency.Nanoseconds()
		switch {
		case a.SockAt == 0:
			missing++
		case a.SockAt < sent || a.SockAt > a.At:
			t.Errorf("stamp %d: sent %d, at the socket %d, read %d: want sent ≤ socket ≤ read", a.Stamp, sent, a.SockAt, a.At)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d stamped packets without a socket arrival, want 0", missing, len(recs))
	}
	if len(sock) != len(lat) || len(lat) == 0 {
		t.Fatalf("%d socket latencies for %d read latencies, want as many (and some)", len(sock), len(lat))
	}
	for i, sl := range sock {
		if sl < 0 || sl > lat[i] {
			t.Fatalf("sample %d: socket latency %d µs, read latency %d µs: want 0 ≤ socket ≤ read", i, sl, lat[i])
		}
	}
	t.Logf("%d packets: socket latency p50 %d µs, read latency p50 %d µs", len(sock), median(sock), median(lat))
	_ = v.Close()
	waitFor(t, slow(5*time.Second), "the viewer's sockets forgotten", func() bool { return times.Sockets() == 0 })
}

func median(v []int32) int32 {
	c := slices.Clone(v)
	slices.Sort(c)
	return c[len(c)/2]
}
