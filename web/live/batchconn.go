package live

import (
	"bufio"
	"encoding/binary"
	"net"
	"net/http"
	"sync"
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
	net.Conn
	mu       sync.Mutex // held across every write to Conn; guards deadline and bufs
	deadline time.Time  // the write deadline last set on Conn
	bufs     net.Buffers
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
	if t.Equal(b.deadline) {
		return nil
	}
	b.deadline = t
	return b.Conn.SetWriteDeadline(t)
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

// interrupt makes a write in progress (which holds mu) fail at once.
func (b *batchConn) interrupt() {
	b.Conn.SetWriteDeadline(time.Unix(1, 0))
}

// hijackWriter hands the upgrader a batchConn instead of the raw connection.
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
	w.bc = &batchConn{Conn: c}
	return w.bc, rw, nil
}
