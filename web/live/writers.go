package live

import (
	"sync"
	"sync/atomic"
)

// writerShard sends events for its share of the connections. Fan-out wakes each shard
// once per event (not each connection's goroutine), and the shard walks its pending
// connections writing every queue with one non-blocking send. A socket that would
// block is handed, mid-frame if need be, to that connection's own writer goroutine, so
// a slow client never delays the others; once its queue is empty it returns here.
type writerShard struct {
	idx     int           // in its pool
	wake    chan struct{} // capacity 1: pending has connections, or stop
	stop    chan struct{}
	done    chan struct{}
	scratch []byte // joins a batch of frames into one send; only the shard's goroutine touches it

	mu      sync.Mutex // guards pending and spare
	pending []*conn
	spare   []*conn
}

func newWriterShard(idx int) *writerShard {
	return &writerShard{idx: idx, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// add queues connections for the next pass; they have frames to send.
func (s *writerShard) add(cs ...*conn) {
	if len(cs) == 0 {
		return
	}
	s.mu.Lock()
	s.pending = append(s.pending, cs...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run flushes pending connections until stop is closed.
func (s *writerShard) run() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		}
		s.mu.Lock()
		list := s.pending
		s.pending, s.spare = s.spare[:0], nil
		s.mu.Unlock()
		for i, c := range list {
			if i+1 < len(list) {
				list[i+1].prefetch()
			}
			c.flushFast(&s.scratch)
		}
		clear(list)
		s.mu.Lock()
		if s.spare == nil {
			s.spare = list[:0]
		}
		s.mu.Unlock()
	}
}

func (s *writerShard) close() {
	close(s.stop)
	<-s.done
}

// writerPool is the hub's shards; connections are spread over them in turn.
type writerPool struct {
	shards []*writerShard
	next   atomic.Uint32
}

func newWriterPool(n int) *writerPool {
	p := &writerPool{shards: make([]*writerShard, n)}
	for i := range p.shards {
		p.shards[i] = newWriterShard(i)
		go p.shards[i].run()
	}
	return p
}

func (p *writerPool) pick() *writerShard {
	return p.shards[int(p.next.Add(1))%len(p.shards)]
}

func (p *writerPool) close() {
	for _, s := range p.shards {
		s.close()
	}
}

// fanOut collects, during one delivery, the connections each shard must flush, so that
// every shard is locked and woken once per event.
type fanOut struct {
	byShard [][]*conn // by writerShard.idx
	shards  []*writerShard
}

func (f *fanOut) add(c *conn) {
	s := c.shard
	for s.idx >= len(f.byShard) {
		f.byShard, f.shards = append(f.byShard, nil), append(f.shards, nil)
	}
	f.shards[s.idx] = s
	f.byShard[s.idx] = append(f.byShard[s.idx], c)
}

func (f *fanOut) flush() {
	for i, cs := range f.byShard {
		if len(cs) == 0 {
			continue
		}
		f.shards[i].add(cs...)
		clear(cs)
		f.byShard[i] = cs[:0]
	}
}
