package live

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// wireFrame encodes data as one unmasked server-to-client websocket text frame
// (RFC 6455 §5.2). It is built once per event and shared by every connection — the
// same idea as websocket.PreparedMessage, without its per-write lock.
func wireFrame(data []byte) []byte {
	n := len(data)
	var b []byte
	switch {
	case n < 126:
		b = make([]byte, 2, 2+n)
		b[1] = byte(n)
	case n <= 0xFFFF:
		b = make([]byte, 4, 4+n)
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10, 10+n)
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[0] = 0x81 // FIN, text
	return append(b, data...)
}

// batchConn is the hijacked connection as the websocket library sees it. Every write,
// the library's (control frames, from the reader too) and the writer's batches of
// prepared frames, goes through mu as one Write or writev, so frames never interleave.
type batchConn struct {
	// The fields the shard's send touches come first (see conn.bcMem): mu, closed, fd.
	mu     sync.Mutex // held across every write to Conn; guards the fields below it
	closed bool       // Close has begun: no more non-blocking sends
	// interrupted: the connection was dropped; no write may wait longer than a close.
	interrupted atomic.Bool
	// fd is the socket's descriptor for the non-blocking sends; -1: none, the writer
	// goroutine sends all. It is used without the poller's reference count (an atomic
	// on a cold cache line per send): the sends hold mu, and Close takes mu before it
	// closes fd, so no send can reach a closed or reused descriptor.
	fd int
	net.Conn
	deadline time.Time // the write deadline last set on Conn
	bufs     net.Buffers
}

// init sets b up on the hijacked connection c.
func (b *batchConn) init(c net.Conn) {
	b.Conn, b.fd = c, -1
	if !rawSends {
		return
	}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) {
				b.fd = int(fd)
				limitUnsent(b.fd)
			})
		}
	}
}

// Close closes the connection once no send is under way (see fd).
func (b *batchConn) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return b.Conn.Close()
}

// errNoRawConn is returned by tryWrite on a connection without a file descriptor.
var errNoRawConn = errors.New("live: no raw connection")

// tryWrite sends frames without waiting, as one send. The caller holds mu. rest is what
// the socket did not take (nil when all went out); it stays valid after scratch is
// reused. scratch joins several frames.
func (b *batchConn) tryWrite(frames []*frame, scratch *[]byte) (rest []byte, err error) {
	if err := b.sendable(); err != nil {
		return nil, err
	}
	buf := frames[0].wire
	if len(frames) > 1 {
		j := appendFrames((*scratch)[:0], frames)
		*scratch, buf = j, j
	}
	sent, errno := sendNow(b.fd, buf)
	if errno != 0 {
		return nil, errno
	}
	return restAfter(buf, sent, len(frames) > 1), nil
}

// sendable says whether the shard may send on b now (the caller holds mu): not without
// a descriptor, nor once Close has begun.
func (b *batchConn) sendable() error {
	if b.fd < 0 {
		return errNoRawConn
	}
	if b.closed {
		return net.ErrClosed
	}
	return nil
}

// appendFrames appends frames' wire bytes to dst.
func appendFrames(dst []byte, frames []*frame) []byte {
	for _, f := range frames {
		dst = append(dst, f.wire...)
	}
	return dst
}

// restAfter is what a send of buf that took sent bytes left: nil when all went out; a
// copy when buf is scratch space (joined), else part of a frame's immutable wire bytes.
func restAfter(buf []byte, sent int, joined bool) []byte {
	if sent >= len(buf) {
		return nil
	}
	if joined {
		return append([]byte(nil), buf[sent:]...)
	}
	return buf[sent:]
}

// finishWrite sends, waiting up to deadline, what tryWrite left, then releases mu,
// which the caller was handed still locked (see conn.flushFast).
func (b *batchConn) finishWrite(rest []byte, deadline time.Time) error {
	defer b.mu.Unlock()
	if err := b.setDeadlineLocked(deadline); err != nil {
		return err
	}
	_, err := b.Conn.Write(rest)
	return err
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Conn.Write(p)
}

// SetWriteDeadline passes a new deadline on; unchanged ones cost nothing.
func (b *batchConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.setDeadlineLocked(t)
}

func (b *batchConn) setDeadlineLocked(t time.Time) error {
	if b.interrupted.Load() {
		// interrupt set a past deadline behind the cache's back: a write that took
		// its data before the drop must not wait a whole WriteTimeout over it.
		if limit := time.Now().Add(closeWait); t.IsZero() || t.After(limit) {
			t = limit
		}
		b.deadline = t
		return b.Conn.SetWriteDeadline(t)
	}
	if t.Equal(b.deadline) {
		return nil
	}
	b.deadline = t
	if err := b.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	if b.interrupted.Load() { // interrupted meanwhile: its deadline may be gone
		return b.setDeadlineLocked(t)
	}
	return nil
}

// writeFrames sends encoded frames with one write (writev for several).
func (b *batchConn) writeFrames(frames []*frame, deadline time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.setDeadlineLocked(deadline); err != nil {
		return err
	}
	if len(frames) == 1 {
		_, err := b.Conn.Write(frames[0].wire)
		return err
	}
	bufs := b.bufs[:0]
	for _, f := range frames {
		bufs = append(bufs, f.wire)
	}
	keep := bufs
	_, err := bufs.WriteTo(b.Conn) // consumes bufs
	clear(keep)
	b.bufs = keep[:0]
	return err
}

// closeWait is how long a close frame (and, after a drop, any write) may wait.
const closeWait = time.Second

// interrupt makes a write in progress (which holds mu) fail at once.
func (b *batchConn) interrupt() {
	b.interrupted.Store(true)
	b.Conn.SetWriteDeadline(time.Unix(1, 0))
}

// hijackWriter hands the upgrader bc, set up on the raw connection, instead of it.
type hijackWriter struct {
	http.ResponseWriter
	hj *http.ResponseController
	bc *batchConn
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := w.hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.bc.init(c)
	return w.bc, rw, nil
}
