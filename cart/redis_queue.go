package cart

import "sync"

// streamQueues groups concurrent calls per stream: while a batch of a stream is at
// Redis, the calls that arrive queue and go together in the next (one script call,
// one round trip), as the embedded store groups its commits. Up to inFlight batches
// per stream are at Redis at once, so Redis has the next batch when it answers one
// (with one, it waited while the node read a batch's replies, answered its callers
// and built the next). A second batch goes only once secondBatchMin calls wait: under
// a light load the calls keep sharing batches (every batch costs Redis and the node
// a script call's frame and a round trip), and a storm fills one in microseconds.
// Batches of one stream in flight at once are concurrent calls: Redis runs each
// script atomically, in either order, as it does for the batches of two nodes;
// streams do not wait for each other.
type streamQueues[T any] struct {
	max      int                         // calls per batch at most
	inFlight int                         // batches of a stream at Redis at once, at most
	run      func(sid string, calls []T) // sends one batch and answers each of its calls
	wg       *sync.WaitGroup             // the store's background work (Close waits)

	mu      sync.Mutex
	pending map[string]*streamQueue[T] // guarded by mu: a stream is a key while a drainer runs
}

// streamQueue is one stream's queued calls and its running drainers.
type streamQueue[T any] struct {
	calls    []T
	draining int // drainers running, at most inFlight
}

// batchesInFlight is how many batches of one stream (holds, checkouts) or of the
// store's shared pipeline may be at Redis at once.
const batchesInFlight = 2

// secondBatchMin is how many calls must wait before a second batch goes while one is
// at Redis.
const secondBatchMin = 8

func newStreamQueues[T any](max int, wg *sync.WaitGroup, run func(string, []T)) *streamQueues[T] {
	return &streamQueues[T]{max: max, inFlight: batchesInFlight, run: run, wg: wg, pending: map[string]*streamQueue[T]{}}
}

// add queues a call of stream sid; run answers it.
func (q *streamQueues[T]) add(sid string, call T) {
	q.mu.Lock()
	sq := q.pending[sid]
	if sq == nil {
		sq = &streamQueue[T]{}
		q.pending[sid] = sq
	}
	sq.calls = append(sq.calls, call)
	start := sq.draining == 0 || (sq.draining < q.inFlight && len(sq.calls) >= secondBatchMin)
	if start {
		sq.draining++
	}
	q.mu.Unlock()
	if start {
		q.wg.Add(1)
		go q.drain(sid, sq)
	}
}

// drain sends the stream's queued calls, batch after batch, and ends when none are
// left (the last drainer of the stream drops its entry).
func (q *streamQueues[T]) drain(sid string, sq *streamQueue[T]) {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		batch := sq.calls
		if len(batch) == 0 {
			sq.draining--
			if sq.draining == 0 {
				delete(q.pending, sid)
			}
			q.mu.Unlock()
			return
		}
		if len(batch) > q.max {
			batch, sq.calls = batch[:q.max:q.max], batch[q.max:]
		} else {
			sq.calls = nil
		}
		q.mu.Unlock()
		q.run(sid, batch)
	}
}
