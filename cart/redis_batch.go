package cart

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// pipeBatcher sends the commands of concurrent calls together: while a pipeline is
// at Redis, the calls that arrive queue and go in the next one, so a storm of
// checkouts pays one round trip (and one wake-up of Redis) per batch, not per call.
// Up to batchesInFlight pipelines are at Redis at once (on their own connections),
// so Redis has the next while the node reads one's replies (a second once
// secondBatchMin calls wait, see streamQueues). Each call's commands
// stay in order and are answered on their own Cmds; Redis still runs every script
// atomically on its own.
type pipeBatcher struct {
	rdb *redis.Client
	wg  *sync.WaitGroup // the store's background work (Close waits)

	mu      sync.Mutex
	pending []*pipeCall // guarded by mu
	senders int         // guarded by mu: sender goroutines running, at most batchesInFlight
}

// pipeCall is one call's commands, queued by add into the batch's pipeline.
type pipeCall struct {
	add  pipeAdder
	done chan struct{} // closed once the batch's answers are in the call's Cmds; nil: nobody waits
	// signal: done is buffered (1) and kept for the call's next use: the batch sends it
	// one value instead of closing it (a pooled call's, see plainClaims).
	signal bool
}

// pipeReleaser is the pipeAdder of a call nobody waits for (done nil) that its batch
// hands back once done with it (into a pool, see doneMarks).
type pipeReleaser interface {
	release()
}

// pipeAdder queues one call's commands into a batch's pipeline. A call's own struct
// may be its adder and embed its pipeCall (see queue): no closure, no pipeCall of its
// own, one or two allocations less per call.
type pipeAdder interface {
	addTo(ctx context.Context, p redis.Pipeliner)
}

// addFunc is a function as a pipeAdder.
type addFunc func(ctx context.Context, p redis.Pipeliner)

func (f addFunc) addTo(ctx context.Context, p redis.Pipeliner) { f(ctx, p) }

// maxPipeBatch bounds the calls of one pipeline.
const maxPipeBatch = 500

// send queues a call; wait on the returned channel for its Cmds to be answered.
func (b *pipeBatcher) send(add func(ctx context.Context, p redis.Pipeliner)) <-chan struct{} {
	c := &pipeCall{add: addFunc(add), done: make(chan struct{})}
	b.queue(c)
	return c.done
}

// queue queues a call whose add and done the caller set (done nil: nobody waits). The
// call must not be queued again before its done is closed (or, without done, ever).
func (b *pipeBatcher) queue(c *pipeCall) {
	b.mu.Lock()
	b.pending = append(b.pending, c)
	start := b.senders == 0 || (b.senders < batchesInFlight && len(b.pending) >= secondBatchMin)
	if start {
		b.senders++
	}
	b.mu.Unlock()
	if start {
		b.wg.Add(1)
		go b.drain()
	}
}

// drain sends batch after batch and ends when no call is left.
func (b *pipeBatcher) drain() {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		batch := b.pending
		if len(batch) > maxPipeBatch {
			batch, b.pending = batch[:maxPipeBatch:maxPipeBatch], batch[maxPipeBatch:]
		} else {
			b.pending = nil
		}
		if len(batch) == 0 {
			b.senders--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		pipe := b.rdb.Pipeline()
		for _, c := range batch {
			c.add.addTo(ctx, pipe)
		}
		pipe.Exec(ctx) // every Cmd carries its own answer or error
		cancel()
		for _, c := range batch {
			// The last use of c here: its waiter, or its pool, may use it again at once.
			switch {
			case c.done == nil:
				if r, ok := c.add.(pipeReleaser); ok {
					r.release()
				}
			case c.signal:
				c.done <- struct{}{}
			default:
				close(c.done)
			}
		}
	}
}

// wait waits for a batched call's answer, or for ctx.
func wait(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return unavailable(ctx.Err())
	}
}
