package stream

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
)

// Batched UDP sends for the parallel relay. pion writes every packet with its own
// sendto on the shared socket, and at a few hundred viewers the system calls and the
// kernel's per-datagram path are most of the relay's CPU. batchConn is the socket
// handed to pion's ICE mux: WriteTo copies the packet into a pooled buffer and queues
// it; one flusher goroutine sends whatever queued while it was busy with one sendmmsg
// (group commit). With a gather time (Options.SendGather) the flusher, woken by the
// first packet of a burst, first lets the queue grow for up to that time or to
// gatherMax packets: a paced publisher's burst of a few packets, written to every
// viewer by their writers one after another, then leaves in a few sendmmsg calls
// instead of one per writer's turn (without it, an idle relay sends at once). Where
// the kernel has UDP GSO, runs of equal-sized packets to one destination (the packets
// of a video frame) go as one datagram train: the kernel builds one buffer and splits
// it late. If the kernel refuses GSO sends on this socket, the batcher falls back to
// plain sendmmsg.
const (
	// sendQueueLen bounds the packets waiting for the flusher (about 40 ms of traffic
	// at 200 viewers). A writer finding it full waits, as it would on a full socket
	// buffer: the viewers' own queues then fill and drop stale video up to the next
	// keyframe. Dropping here instead lost arbitrary packets, keyframes included, and
	// under CPU starvation the NACKs and PLIs that followed made it worse (32 % loss
	// at 300 viewers in one run).
	sendQueueLen = 2048
	// mmsgBatch is the most messages per sendmmsg.
	mmsgBatch = 64
	// gsoMaxSegments and gsoMaxBytes bound one GSO train (the kernel allows 64 segments
	// in one 64 KiB datagram); gsoMaxSegment keeps segments under an Ethernet MTU.
	gsoMaxSegments = 64
	gsoMaxBytes    = 60000
	gsoMaxSegment  = 1400
	// gatherMax is the queue length at which a gathering flusher stops waiting.
	gatherMax = 512
)

// outPacket is one queued datagram.
type outPacket struct {
	buf  *[]byte // pooled; (*buf) holds the datagram
	dst  netip.AddrPort
	addr net.Addr
}

// batchConn wraps the relay's UDP socket. Reads (on Linux a raw recvfrom: rawReader),
// LocalAddr and deadlines go straight to the socket; writes are queued for the
// flusher. Per destination the order of writes is kept.
type batchConn struct {
	*net.UDPConn
	batch *ipv4.PacketConn
	raw   *rawSender // sendmmsg as a raw system call (Linux); nil: batch.WriteBatch
	rd    *rawReader // recvfrom as a raw system call (Linux); nil: the socket's ReadFrom
	stats sendStats
	wake  chan struct{} // 1-buffered: the queue is not empty
	full  chan struct{} // 1-buffered: the queue reached gatherMax
	space *sync.Cond    // on mu: the flusher took the queue, or Close
	stop  chan struct{} // closed by Close
	done  chan struct{} // closed when the flusher returns
	pool  sync.Pool

	limit  int           // most packets queued
	gather time.Duration // how long the flusher lets a batch grow after a wake (0: not)

	mu      sync.Mutex
	queue   []outPacket // guarded by mu
	waiting int         // guarded by mu: writers waiting for space
	closed  bool        // guarded by mu

	gso bool    // the kernel takes UDP_SEGMENT (as the senders start)
	fl  *sender // the flusher's
}

// sender sends batches of datagrams on a batchConn's socket: the flusher's, and one of
// each viewers' writer that sends its own (sendBatch). Its state is its goroutine's.
type sender struct {
	c     *batchConn
	raw   *rawSender // nil: x/net's WriteBatch
	gso   bool
	msgs  []ipv4.Message
	bufs  [][]byte // backs the messages' Buffers
	oob   []byte   // backs the messages' GSO control data
	order []netip.AddrPort
	byDst map[netip.AddrPort][]int
}

// newSender returns a sender of its own for one goroutine (raw: c.raw for the flusher,
// else a raw sender of its own).
func (c *batchConn) newSender(raw *rawSender) *sender {
	return &sender{c: c, raw: raw, gso: c.gso, byDst: map[netip.AddrPort][]int{},
		msgs: make([]ipv4.Message, 0, mmsgBatch), oob: make([]byte, mmsgBatch*gsoControlLen)}
}

// sendStats counts what the batcher does.
type sendStats struct {
	waits    prometheus.Counter // writes that waited for a full queue
	errors   prometheus.Counter // datagrams the kernel refused
	calls    prometheus.Counter // sendmmsg calls
	messages prometheus.Counter // messages in them (a GSO train is one)
}

// newBatchConn starts the flusher; Close stops it. gso: the kernel takes UDP_SEGMENT
// (gsoSupported).
func newBatchConn(c *net.UDPConn, gso bool, stats sendStats, gather time.Duration) *batchConn {
	b := makeBatchConn(c, gso, stats, sendQueueLen)
	b.gather = gather
	go b.flushLoop()
	return b
}

// makeBatchConn builds the conn without its flusher.
func makeBatchConn(c *net.UDPConn, gso bool, stats sendStats, limit int) *batchConn {
	b := &batchConn{
		UDPConn: c, batch: ipv4.NewPacketConn(c), raw: newRawSender(c), rd: newRawReader(c), stats: stats, limit: limit,
		wake: make(chan struct{}, 1), full: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		gso: gso,
	}
	b.fl = b.newSender(b.raw)
	b.space = sync.NewCond(&b.mu)
	b.pool.New = func() any { s := make([]byte, 0, 1500); return &s }
	return b
}

// WriteTo queues a copy of p for addr; it waits only while the queue is full.
func (c *batchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.UDPConn.WriteTo(p, addr)
	}
	ap := ua.AddrPort()
	bp := c.buffer()
	*bp = append((*bp)[:0], p...)
	if err := c.enqueue(bp, ua, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())); err != nil {
		return 0, err
	}
	return len(p), nil
}

// buffer returns a pooled datagram buffer (capacity at least 1,500 bytes) for enqueue,
// or for recycle if it is not sent.
func (c *batchConn) buffer() *[]byte { return c.pool.Get().(*[]byte) }

// recycle returns a buffer from buffer that was not queued.
func (c *batchConn) recycle(bp *[]byte) { c.pool.Put(bp) }

// enqueue queues the datagram in bp (from buffer; the batcher owns it now) for ua,
// whose unmapped address is dst. It waits only while the queue is full.
func (c *batchConn) enqueue(bp *[]byte, ua *net.UDPAddr, dst netip.AddrPort) error {
	c.mu.Lock()
	if len(c.queue) >= c.limit && !c.closed {
		c.stats.waits.Inc()
		c.waiting++
		for len(c.queue) >= c.limit && !c.closed {
			c.space.Wait()
		}
		c.waiting--
	}
	if c.closed {
		c.mu.Unlock()
		c.pool.Put(bp)
		return net.ErrClosed
	}
	c.queue = append(c.queue, outPacket{buf: bp, dst: dst, addr: ua})
	n := len(c.queue)
	c.mu.Unlock()
	switch {
	case n == 1:
		// Only the write that made the queue non-empty wakes the flusher: the flusher
		// has not taken the queue since, and takes it again until it finds it empty.
		select {
		case c.wake <- struct{}{}:
		default:
		}
	case n == gatherMax && c.gather > 0:
		select {
		case c.full <- struct{}{}:
		default:
		}
	}
	return nil
}

// Close stops the flusher after it sent what was queued, then closes the socket.
func (c *batchConn) Close() error {
	c.mu.Lock()
	was := c.closed
	c.closed = true
	c.space.Broadcast()
	c.mu.Unlock()
	if !was {
		close(c.stop)
		<-c.done
	}
	return c.UDPConn.Close()
}

// flushLoop sends batches until Close: each turn takes the whole queue.
func (c *batchConn) flushLoop() {
	defer close(c.done)
	var spare []outPacket
	var timer *time.Timer
	if c.gather > 0 {
		timer = time.NewTimer(time.Hour)
		timer.Stop()
	}
	stop := func() {
		c.mu.Lock()
		q := c.queue
		c.queue = nil
		c.mu.Unlock()
		c.fl.send(q)
	}
	for {
		select {
		case <-c.wake:
		case <-c.stop:
			stop()
			return
		}
		if timer != nil && !c.gatherWait(timer) {
			stop()
			return
		}
		for {
			c.mu.Lock()
			q := c.queue
			c.queue = spare[:0]
			if c.waiting > 0 {
				c.space.Broadcast()
			}
			c.mu.Unlock()
			if len(q) == 0 {
				spare = q
				break
			}
			c.fl.send(q)
			clear(q) // drop the references to pooled buffers and addresses
			spare = q
		}
	}
}

// gatherWait lets the queue grow for up to c.gather or to gatherMax packets, so a
// burst that reaches the batcher over a few hundred microseconds (a paced publisher's
// few packets, written to every viewer by their writers one after another) goes out
// in fewer sendmmsg calls, each viewer's packets in longer GSO trains. False: Close.
func (c *batchConn) gatherWait(timer *time.Timer) bool {
	select {
	case <-c.full: // stale: from a queue the flusher has taken since
	default:
	}
	c.mu.Lock()
	n := len(c.queue)
	c.mu.Unlock()
	if n >= gatherMax {
		return true
	}
	timer.Reset(c.gather)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-c.full:
	case <-c.stop:
		return false
	}
	return true
}

// send writes q (then recycles its buffers), grouped per destination in order.
func (s *sender) send(q []outPacket) {
	s.group(q)
	s.bufs = slices.Grow(s.bufs[:0], len(q))
	for _, dst := range s.order {
		idx := s.byDst[dst]
		for len(idx) > 0 {
			n, size := s.run(q, idx)
			start := len(s.bufs)
			for _, i := range idx[:n] {
				s.bufs = append(s.bufs, *q[i].buf)
			}
			m := ipv4.Message{Addr: q[idx[0]].addr, Buffers: s.bufs[start:len(s.bufs):len(s.bufs)]}
			if n > 1 {
				k := len(s.msgs) * gsoControlLen
				m.OOB = gsoControl(s.oob[k:k+gsoControlLen], size)
			}
			s.msgs = append(s.msgs, m)
			idx = idx[n:]
			if len(s.msgs) == mmsgBatch {
				s.write(s.msgs)
				s.msgs = s.msgs[:0]
			}
		}
	}
	s.write(s.msgs)
	clear(s.msgs[:cap(s.msgs)])
	s.msgs = s.msgs[:0]
	clear(s.bufs)
	for _, p := range q {
		s.c.pool.Put(p.buf)
	}
}

// group lists q's destinations in order of first appearance, each with the indexes of
// its packets in order.
func (s *sender) group(q []outPacket) {
	for _, dst := range s.order {
		s.byDst[dst] = s.byDst[dst][:0]
	}
	if len(s.byDst) > 4*len(s.order)+64 {
		clear(s.byDst) // forget departed viewers now and then
	}
	s.order = s.order[:0]
	for i, p := range q {
		idx, seen := s.byDst[p.dst]
		if !seen || len(idx) == 0 {
			s.order = append(s.order, p.dst)
		}
		s.byDst[p.dst] = append(idx, i)
	}
}

// run returns how many of the packets idx names go in one message, and their segment
// size: with GSO, a run of equal sizes, the last one possibly shorter.
func (s *sender) run(q []outPacket, idx []int) (int, int) {
	size := len(*q[idx[0]].buf)
	if !s.gso || size > gsoMaxSegment {
		return 1, size
	}
	n, total := 1, size
	for n < len(idx) && n < gsoMaxSegments {
		l := len(*q[idx[n]].buf)
		if l > size || l == 0 || total+l > gsoMaxBytes {
			break
		}
		n, total = n+1, total+l
		if l < size {
			break
		}
	}
	return n, size
}

// write sends msgs with sendmmsg. A message the kernel refuses is counted and skipped.
// A refused GSO train is sent packet by packet; when the kernel refused it for being a
// GSO train (EIO: the device cannot; EINVAL: e.g. a socket without UDP checksums or a
// route MTU below the segment size) and the same packets then go out one by one, GSO is
// turned off for good and the rest of the batch is sent as plain sendmmsg messages.
// A train refused for its destination (the single packets fail too) leaves GSO on.
func (s *sender) write(msgs []ipv4.Message) {
	for len(msgs) > 0 {
		n, err := s.sendmmsg(msgs)
		s.c.stats.calls.Inc()
		s.c.stats.messages.Add(float64(max(n, 0)))
		if err == nil {
			msgs = msgs[n:]
			continue
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
		m := msgs[0]
		msgs = msgs[1:]
		if len(m.OOB) == 0 {
			s.c.stats.errors.Inc()
			continue
		}
		if s.sendSingly(m) && gsoRefused(err) {
			s.gso = false
			msgs = withoutGSO(msgs)
		}
	}
}

// sendmmsg sends msgs (or a first part) in one system call: the number sent, or the
// error for msgs[0].
func (s *sender) sendmmsg(msgs []ipv4.Message) (int, error) {
	if s.raw != nil {
		n, err := s.raw.send(msgs)
		if err != errNoSockaddr {
			return n, err
		}
		msgs = msgs[:1] // e.g. a link-local IPv6 zone: x/net resolves it
	}
	return s.c.batch.WriteBatch(msgs, 0)
}

// gsoRefused tells whether a failed GSO send may have failed for being GSO.
func gsoRefused(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EINVAL)
}

// sendSingly sends a refused train's packets one by one; true if the first went out.
func (s *sender) sendSingly(m ipv4.Message) bool {
	first := true
	for i, b := range m.Buffers {
		if _, err := s.c.UDPConn.WriteTo(b, m.Addr); err != nil {
			s.c.stats.errors.Inc()
			if i == 0 {
				first = false
			}
		}
	}
	return first
}

// withoutGSO splits msgs' GSO trains into one message per packet (a new slice: msgs
// may share its backing array with the flusher's batch).
func withoutGSO(msgs []ipv4.Message) []ipv4.Message {
	out := make([]ipv4.Message, 0, len(msgs))
	for _, m := range msgs {
		if len(m.OOB) == 0 {
			out = append(out, m)
			continue
		}
		for _, b := range m.Buffers {
			out = append(out, ipv4.Message{Addr: m.Addr, Buffers: [][]byte{b}})
		}
	}
	return out
}
