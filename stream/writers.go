package stream

import (
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// The viewers' writers: a few goroutines (one per CPU), each serving a fixed share of
// the viewers. The fan-out queues a packet on every viewer's bounded queue and wakes
// only the writers whose viewers got it: one wake-up per writer per burst, where a
// goroutine per viewer took one per viewer (at 100 paced viewers the scheduler's
// parking and waking was ~16 % of the relay's CPU). A writer's pass takes at most
// writeBatch packets from each of its viewers in turn and passes again while any has
// more, so one viewer's backlog delays the others of its writer by at most one
// batch; a viewer whose queue fills (its writer is behind) drops video until the next
// keyframe, as before.
//
// A writer sends its own datagrams (sendBatch: one sendmmsg per pass, or per
// sendBatchMax datagrams) instead of queueing them for the batcher's flusher: no
// hand-off to a third goroutine per burst, no shared queue's lock per datagram.

// maxWriters bounds the writer pool (the fan-out marks the writers it woke in a
// 64-bit mask).
const maxWriters = 64

// sendBatchMax is the most datagrams a writer collects before it sends them.
const sendBatchMax = 256

// writerPool is the relay's writers; viewers are assigned in turn.
type writerPool struct {
	ws   []*writer
	next atomic.Uint32
}

// writer is one goroutine writing for its share of the viewers.
type writer struct {
	idx     int
	metrics *metrics
	batch   *sendBatch    // nil: the viewers' packets go through the batcher's queue
	wake    chan struct{} // 1-buffered: a viewer of this writer has packets queued
	stop    chan struct{}
	done    chan struct{}

	mu      sync.Mutex                // serializes changes to viewers
	viewers atomic.Pointer[[]*viewer] // copy-on-write: the writer's passes read it
}

// newWriterPool starts one writer per CPU, each sending on its own sender of out (nil:
// none); stop ends them.
func newWriterPool(m *metrics, out *batchConn) *writerPool {
	n := min(max(runtime.GOMAXPROCS(0), 1), maxWriters)
	p := &writerPool{ws: make([]*writer, n)}
	for i := range p.ws {
		w := &writer{idx: i, metrics: m, wake: make(chan struct{}, 1),
			stop: make(chan struct{}), done: make(chan struct{})}
		if out != nil {
			w.batch = &sendBatch{s: out.newSender(newRawSender(out.UDPConn))}
		}
		empty := []*viewer{}
		w.viewers.Store(&empty)
		p.ws[i] = w
		go w.run()
	}
	return p
}

// stop ends the writers and waits for them.
func (p *writerPool) stop() {
	for _, w := range p.ws {
		close(w.stop)
	}
	for _, w := range p.ws {
		<-w.done
	}
}

// add gives v a writer.
func (p *writerPool) add(v *viewer) {
	w := p.ws[int(p.next.Add(1)-1)%len(p.ws)]
	v.w = w
	w.mu.Lock()
	defer w.mu.Unlock()
	list := append(slices.Clone(*w.viewers.Load()), v)
	w.viewers.Store(&list)
}

// remove takes v off its writer (v.w stays set: a fan-out may still wake it).
func (w *writer) remove(v *viewer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	old := *w.viewers.Load()
	i := slices.Index(old, v)
	if i < 0 {
		return
	}
	list := slices.Delete(slices.Clone(old), i, i+1)
	w.viewers.Store(&list)
}

// wakeWriters wakes the writers marked in mask (bit i: the pool's writer i).
func (p *writerPool) wakeWriters(mask uint64) {
	for i, w := range p.ws {
		if mask&(1<<i) != 0 {
			w.poke()
		}
	}
}

// poke wakes the writer unless a wake-up is pending already.
func (w *writer) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run writes its viewers' queued packets until stop.
func (w *writer) run() {
	defer close(w.done)
	var sent, passes int
	defer func() {
		w.metrics.forwarded.Add(float64(sent))
		w.metrics.batches.Add(float64(passes))
	}()
	for {
		select {
		case <-w.wake:
		case <-w.stop:
			return
		}
		// The fan-out queues, then pokes: packets queued during a pass leave a pending
		// wake-up behind for the next one.
		for more := true; more; {
			more = false
			passes++
			for _, v := range *w.viewers.Load() {
				n, left := v.drain(w.batch)
				sent += n
				more = more || left
			}
			w.batch.flush()
		}
		if sent >= 1024 {
			w.metrics.forwarded.Add(float64(sent))
			w.metrics.batches.Add(float64(passes))
			sent, passes = 0, 0
		}
	}
}

// drain writes up to writeBatch of v's queued packets: the number written, and
// whether more are queued.
func (v *viewer) drain(sb *sendBatch) (int, bool) {
	sent := 0
	for n := 0; n < writeBatch; n++ {
		var e entry
		select {
		case e = <-v.q:
		default:
			return sent, false
		}
		if v.closed.Load() {
			return sent, false
		}
		if v.write(e, sb) {
			sent++
		}
	}
	return sent, len(v.q) > 0
}

// sendBatch is a writer's datagrams waiting for its next sendmmsg.
type sendBatch struct {
	s *sender
	q []outPacket
}

// add takes the datagram in bp (a batcher buffer) for ua, whose unmapped address is
// dst; the batch is sent once it holds sendBatchMax.
func (b *sendBatch) add(bp *[]byte, ua *net.UDPAddr, dst netip.AddrPort) error {
	b.q = append(b.q, outPacket{buf: bp, dst: dst, addr: ua})
	if len(b.q) >= sendBatchMax {
		b.flush()
	}
	return nil
}

// flush sends what the batch holds (nil: nothing to do).
func (b *sendBatch) flush() {
	if b == nil || len(b.q) == 0 {
		return
	}
	b.s.send(b.q)
	clear(b.q) // drop the references to pooled buffers and addresses
	b.q = b.q[:0]
}
