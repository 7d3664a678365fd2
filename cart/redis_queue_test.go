package cart

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestStreamQueuesTwoInFlight: while a stream's batch is at Redis (run blocked), the
// next call of the stream goes at once in a second batch (Redis gets it while the node
// reads the first one's replies); a third waits for one of them and then goes with
// everything queued meanwhile; another stream never waits; every call is answered once
// and a stream's entry goes when its last drainer ends.
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
	answered := make(chan int, 16)
	q := newStreamQueues(3, &wg, func(sid string, calls []int) {
		started <- calls
		<-gate(calls[0])
		for _, c := range calls {
			answered <- c
		}
	})
	next := func() []int {
		t.Helper()
		select {
		case b := <-started:
			return b
		case <-time.After(2 * time.Second):
			t.Fatal("no batch started")
			return nil
		}
	}
	quiet := func() {
		t.Helper()
		select {
		case b := <-started:
			t.Fatalf("batch %v started, want none (two in flight)", b)
		case <-time.After(50 * time.Millisecond):
		}
	}
	q.add("s", 1)
	if b := next(); len(b) != 1 || b[0] != 1 {
		t.Fatalf("first batch %v, want [1]", b)
	}
	q.add("s", 2) // the first is at Redis: the second goes at once
	if b := next(); len(b) != 1 || b[0] != 2 {
		t.Fatalf("second batch %v, want [2] while [1] is in flight", b)
	}
	for c := 3; c <= 7; c++ {
		q.add("s", c)
	}
	quiet()
	q.add("t", 100) // another stream does not wait
	close(gate(100))
	if b := next(); len(b) != 1 || b[0] != 100 {
		t.Fatalf("other stream's batch %v, want [100]", b)
	}
	close(gate(2))
	if b := next(); len(b) != 3 || b[0] != 3 || b[2] != 5 {
		t.Fatalf("third batch %v, want [3 4 5] (at most 3 a batch)", b)
	}
	quiet()
	close(gate(3))
	if b := next(); len(b) != 2 || b[0] != 6 {
		t.Fatalf("fourth batch %v, want [6 7]", b)
	}
	close(gate(1))
	close(gate(6))
	wg.Wait()
	close(answered)
	seen := map[int]int{}
	for c := range answered {
		seen[c]++
	}
	for _, c := range []int{1, 2, 3, 4, 5, 6, 7, 100} {
		if seen[c] != 1 {
			t.Errorf("call %d answered %d times, want once", c, seen[c])
		}
	}
	if len(q.pending) != 0 {
		t.Errorf("streams left queued: %v", q.pending)
	}
}

// TestPipeBatcherTwoInFlight: while one pipeline is at Redis (a BLPOP in it holds its
// reply back), the next call goes in a second pipeline at once, on another connection.
func TestPipeBatcherTwoInFlight(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	b := st.batch
	ctx := context.Background()
	key := st.prefix + "empty" // BLPOP on an empty list: a reply a second late
	var slow *redis.StringSliceCmd
	first := b.send(func(ctx context.Context, p redis.Pipeliner) { slow = p.BLPop(ctx, time.Second, key) })
	time.Sleep(100 * time.Millisecond) // the first pipeline is at Redis
	var ping *redis.StatusCmd
	start := time.Now()
	second := b.send(func(ctx context.Context, p redis.Pipeliner) { ping = p.Ping(ctx) })
	if err := wait(ctx, second); err != nil || ping.Err() != nil {
		t.Fatalf("second call: %v %v", err, ping.Err())
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("the second call waited %v for the first pipeline, want it sent at once", d)
	}
	if err := wait(ctx, first); err != nil || slow.Err() != redis.Nil {
		t.Fatalf("first call: %v %v, want a timed-out BLPOP", err, slow.Err())
	}
}
