package live

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// batchConn lets the writer goroutine gather several frames and send them with one
// write: between cork and flush, writes are buffered. Every write to the connection,
// corked or not, goes through mu, so control frames written by the reader never land
// inside another frame.
type batchConn struct {
	net.Conn
	mu       sync.Mutex // guards buf, corked and deadline, and is held across writes to Conn
	corked   bool
	buf      []byte
	deadline time.Time // the write deadline last set on Conn
}

// SetWriteDeadline passes a new deadline on; the library sets the same one before
// every frame, and each change costs a timer update.
func (b *batchConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.Equal(b.deadline) {
		return nil
	}
	b.deadline = t
	return b.Conn.SetWriteDeadline(t)
}

// interrupt makes a write in progress (which holds mu) fail at once.
func (b *batchConn) interrupt() {
	b.Conn.SetWriteDeadline(time.Unix(1, 0))
}

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.corked {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

func (b *batchConn) cork() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.corked = true
	if b.buf == nil {
		b.buf = (*batchBufs.Get().(*[]byte))[:0]
	}
}

// flush sends what was buffered since cork in one write and uncorks.
func (b *batchConn) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.corked = false
	buf := b.buf
	b.buf = nil
	if buf == nil {
		return nil
	}
	_, err := b.Conn.Write(buf)
	if cap(buf) <= 256<<10 {
		buf = buf[:0]
		batchBufs.Put(&buf)
	}
	return err
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
