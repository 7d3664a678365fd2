package cart

import "sync"

// streamQueues groups concurrent calls per stream: while one batch of a stream is at
// Redis, the calls that arrive queue and go together in the next (one script call,
// one round trip), as the embedded store groups its commits. At most one batch per
// stream is in flight; streams do not wait for each other.
type streamQueues[T any] struct {
	max int                         // calls per batch at most
	run func(sid string, calls []T) // sends one batch and answers each of its calls
	wg  *sync.WaitGroup             // the store's background work (Close waits)

	mu      sync.Mutex
	pending map[string][]T // guarded by mu: a stream is a key while its drainer runs
}

func newStreamQueues[T any](max int, wg *sync.WaitGroup, run func(string, []T)) *streamQueues[T] {
	return &streamQueues[T]{max: max, run: run, wg: wg, pending: map[string][]T{}}
}

// add queues a call of stream sid; run answers it.
func (q *streamQueues[T]) add(sid string, call T) {
	q.mu.Lock()
	calls, busy := q.pending[sid]
	q.pending[sid] = append(calls, call)
	q.mu.Unlock()
	if !busy {
		q.wg.Add(1)
		go q.drain(sid)
	}
}

// drain sends the stream's queued calls, batch after batch, and ends (dropping the
// stream's entry) when none are left.
func (q *streamQueues[T]) drain(sid string) {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		batch := q.pending[sid]
		if len(batch) == 0 {
			delete(q.pending, sid)
			q.mu.Unlock()
			return
		}
		if len(batch) > q.max {
			batch, q.pending[sid] = batch[:q.max:q.max], batch[q.max:]
		} else {
			q.pending[sid] = batch[:0:0]
		}
		q.mu.Unlock()
		q.run(sid, batch)
	}
}
