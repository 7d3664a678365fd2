package cart

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestStreamQueuesTwoInFlight: while a stream's batch is at Redis (run blocked), the
// calls of the stream queue, and once secondBatchMin wait they go at once in a second
// batch (Redis gets it while the node reads the first one's replies); later calls wait
// for one of the two and then go with everything queued meanwhile (at most max a
// batch); another stream never waits; every call is answered once and a stream's
// entry goes when its last drainer ends.
func TestStreamQueuesTwoInFlight(t *testing.T) {
	var wg sync.WaitGroup
	started := make(chan []int, 16)
	release := map[int]chan struct{}{}
	var mu sync.Mutex
	gate := func(call int) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		if release[call] == nil {
			release[call] = make(chan struct{})
		}
		return release[call]
	}
	answered := make(chan int, 64)
	const max = 10
	q := newStreamQueues(max, &wg, func(sid string, calls []int) {
		started <- calls
		<-gate(calls[0])
		for _, c := range calls {
			answered <- c
		}
	})
	next := func(first, n int) {
		t.Helper()
		select {
		case b := <-started:
			if len(b) != n || b[0] != first {
				t.Fatalf("batch %v, want %d calls from %d", b, n, first)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("no batch started, want %d calls from %d", n, first)
		}
	}
	quiet := func() {
		t.Helper()
		select {
		case b := <-started:
			t.Fatalf("batch %v started, want none", b)
		case <-time.After(50 * time.Millisecond):
		}
	}
	q.add("s", 1)
	next(1, 1)
	for c := 2; c < 1+secondBatchMin; c++ {
		q.add("s", c)
	}
	quiet() // too few wait for a second batch
	q.add("s", 1+secondBatchMin)
	next(2, secondBatchMin) // the first is at Redis: the second goes at once
	last := 1 + secondBatchMin + max + 5
	for c := 2 + secondBatchMin; c <= last; c++ {
		q.add("s", c)
	}
	quiet()         // two in flight
	q.add("t", 100) // another stream does not wait
	close(gate(100))
	next(100, 1)
	close(gate(2))
	next(2+secondBatchMin, max)
	quiet()
	close(gate(2 + secondBatchMin))
	next(2+secondBatchMin+max, 5)
	close(gate(1))
	close(gate(2 + secondBatchMin + max))
	wg.Wait()
	close(answered)
	seen := map[int]int{}
	for c := range answered {
		seen[c]++
	}
	for c := 1; c <= last; c++ {
		if seen[c] != 1 {
			t.Errorf("call %d answered %d times, want once", c, seen[c])
		}
	}
	if seen[100] != 1 || len(q.pending) != 0 {
		t.Errorf("other stream's call answered %d times; streams left queued: %v", seen[100], q.pending)
	}
}

// TestPipeBatcherTwoInFlight: while one pipeline is at Redis (a BLPOP in it holds its
// reply back), the calls that come go in a second pipeline on another connection once
// secondBatchMin wait.
func TestPipeBatcherTwoInFlight(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	b := st.batch
	ctx := context.Background()
	key := st.prefix + "empty" // BLPOP on an empty list: a reply a second late
	var slow *redis.StringSliceCmd
	first := b.send(func(ctx context.Context, p redis.Pipeliner) { slow = p.BLPop(ctx, time.Second, key) })
	time.Sleep(100 * time.Millisecond) // the first pipeline is at Redis
	pings := make([]*redis.StatusCmd, secondBatchMin)
	dones := make([]<-chan struct{}, secondBatchMin)
	start := time.Now()
	for i := range pings {
		dones[i] = b.send(func(ctx context.Context, p redis.Pipeliner) { pings[i] = p.Ping(ctx) })
	}
	for i, done := range dones {
		if err := wait(ctx, done); err != nil || pings[i].Err() != nil {
			t.Fatalf("call %d: %v %v", i, err, pings[i].Err())
		}
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("the later calls waited %v for the first pipeline, want them sent at once", d)
	}
	if err := wait(ctx, first); err != nil || slow.Err() != redis.Nil {
		t.Fatalf("first call: %v %v, want a timed-out BLPOP", err, slow.Err())
	}
}
