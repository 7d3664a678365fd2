package live

import (
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
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

	// With io_uring (ring not nil; only the shard's goroutine touches these): the
	// sends gathered for the next io_uring_enter, each connection's batch with its
	// descriptor and bytes (a frame's wire bytes, or the batch joined in arena).
	ring  *sendRing
	arena []byte
	rSend []ringSend
	rFDs  []int
	rBufs [][]byte
	rRes  []int32
	// ringSends counts the sends that went through ring (one add per io_uring_enter
	// batch), for the tests.
	ringSends atomic.Uint64

	mu      sync.Mutex // guards pending and spare
	pending []*conn
	spare   []*conn
}

// ringSend is one connection's send gathered by flushRing.
type ringSend struct {
	c        *conn
	batch    []*frame
	off, end int // the bytes joined in the shard's arena; off -1: batch[0].wire
}

func newWriterShard(idx, sendBatch int) *writerShard {
	s := &writerShard{idx: idx, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if sendBatch > 1 {
		s.ring = newSendRing(sendBatch)
	}
	return s
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
	defer func() {
		if s.ring != nil {
			s.ring.close()
		}
	}()
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
		if s.ring != nil && !s.ring.broken {
			s.flushRing(list)
		} else {
			for i, c := range list {
				if i+1 < len(list) {
					list[i+1].prefetch()
				}
				c.flushFast(&s.scratch)
			}
		}
		clear(list)
		s.mu.Lock()
		if s.spare == nil {
			s.spare = list[:0]
		}
		s.mu.Unlock()
	}
}

// flushRing is run's pass over list with io_uring: each connection's batch becomes one
// IORING_OP_SEND (MSG_DONTWAIT, as sendNow), up to ring.batch() of them per
// io_uring_enter, and each completion is ended as flushFast ends its send. Every
// connection's bc.mu is held from flushBegin until its completion is reaped, so, as
// with sendNow, no send can reach a closed or reused descriptor.
func (s *writerShard) flushRing(list []*conn) {
	limit := s.ring.batch()
	for i, c := range list {
		if i+1 < len(list) {
			list[i+1].prefetch()
		}
		if s.ring.broken { // failed in this pass (sendAll): the rest with sendNow
			c.flushFast(&s.scratch)
			continue
		}
		batch, ok := c.flushBegin()
		if !ok {
			continue
		}
		bc := &c.bcMem
		if err := bc.sendable(); err != nil {
			c.flushEnd(batch, nil, err)
			continue
		}
		rs := ringSend{c: c, batch: batch, off: -1}
		if len(batch) > 1 {
			if len(s.arena) >= arenaFlush && len(s.rSend) > 0 {
				s.sendGathered() // bounds the arena: a few clients far behind join a lot
				runtime.Gosched()
			}
			rs.off = len(s.arena)
			s.arena = appendFrames(s.arena, batch)
			rs.end = len(s.arena)
		}
		s.rSend = append(s.rSend, rs)
		s.rFDs = append(s.rFDs, bc.fd)
		if len(s.rSend) == limit {
			s.sendGathered()
			// The io_uring_enter is a raw system call (sendAll): the P was not let go
			// for its ~1 ms, so let an HTTP request or the next event's delivery run
			// before the next batch instead of after the whole pass.
			runtime.Gosched()
		}
	}
	if len(s.rSend) > 0 {
		s.sendGathered()
	}
}

// sendGathered sends what flushRing gathered, with one io_uring_enter when it can, and
// ends each connection's send with its result.
func (s *writerShard) sendGathered() {
	n := len(s.rSend)
	for _, rs := range s.rSend { // the arena is final now: nothing moves it before the sends end
		if rs.off < 0 {
			s.rBufs = append(s.rBufs, rs.batch[0].wire)
		} else {
			s.rBufs = append(s.rBufs, s.arena[rs.off:rs.end])
		}
	}
	if cap(s.rRes) < n {
		s.rRes = make([]int32, n)
	}
	res := s.rRes[:n]
	s.ring.sendAll(s.rFDs, s.rBufs, res)
	s.ringSends.Add(uint64(n))
	for i, rs := range s.rSend {
		var rest []byte
		var err error
		switch r := res[i]; {
		case r >= 0:
			rest = restAfter(s.rBufs[i], int(r), rs.off >= 0)
		case syscall.Errno(-r) == syscall.EAGAIN || syscall.Errno(-r) == syscall.EINTR:
			rest = restAfter(s.rBufs[i], 0, rs.off >= 0)
		default:
			err = syscall.Errno(-r)
		}
		rs.c.flushEnd(rs.batch, rest, err)
	}
	clear(s.rSend)
	clear(s.rBufs)
	s.rSend, s.rFDs, s.rBufs, s.arena = s.rSend[:0], s.rFDs[:0], s.rBufs[:0], s.arena[:0]
	if cap(s.arena) > arenaKeep {
		s.arena = nil
	}
}

// arenaFlush: flushRing sends what it has gathered before it joins more into an arena
// this full; arenaKeep: a larger arena is not kept for the next pass.
const (
	arenaFlush = 64 << 10
	arenaKeep  = 1 << 20
)

func (s *writerShard) close() {
	close(s.stop)
	<-s.done
}

// writerPool is the hub's shards; connections are spread over them in turn.
type writerPool struct {
	shards []*writerShard
	next   atomic.Uint32
}

func newWriterPool(n, sendBatch int) *writerPool {
	p := &writerPool{shards: make([]*writerShard, n)}
	for i := range p.shards {
		p.shards[i] = newWriterShard(i, sendBatch)
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
