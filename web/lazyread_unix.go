//go:build unix

package web

import (
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
)

// LazyBackgroundReads returns ln with its TCP connections wrapped so that net/http's
// background read of a request in flight waits for the socket to be readable before
// its first read(2), and sets srv.ConnState (calling any hook already set) to tell the
// connections when they are hijacked.
//
// net/http starts a one-byte background read once a request's body is read (at once
// when it has none), to see the client hang up while the handler runs. A handler that
// returns without parking (a no-op) ends that read before it starts: its deadline is
// already past, no system call. A handler that parks (every hold and checkout waits for
// its store batch) lets it run first, and it calls read(2) only to be told EAGAIN and
// wait in the netpoller: one system call more per sale request than per no-op (~1.1 µs
// on a PVM guest, where a system call is dear, with the kernel's socket work around
// it). Here that read waits for readiness first and calls read(2) once the poller says
// the socket has something: data of the next request, the client's FIN, or an error.
//
// What it sees is what the plain read sees, but for bytes that were in the socket
// already when it started and whose readiness was taken by an earlier wait (a client
// sending the next request in the same packet as this one's body, or closing right
// after it): the plain read would take one byte of them (or the EOF) at once, this one
// sees them when net/http ends the background read after the handler, as if they had
// come then. Nothing is lost: net/http's next read gets the bytes, or the EOF.
//
// Only one-byte reads of a connection that is not hijacked are changed (net/http's own
// reads of requests go through a 4 KiB buffer); a hijacked connection (websockets)
// reads as a net.TCPConn does, so a one-byte read of bytes already there never waits.
func LazyBackgroundReads(srv *http.Server, ln net.Listener) net.Listener {
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		if lc, ok := c.(*lazyReadConn); ok && (st == http.StateHijacked || st == http.StateClosed) {
			lc.plain.Store(true)
		}
		if prev != nil {
			prev(c, st)
		}
	}
	return lazyReadListener{ln}
}

type lazyReadListener struct{ net.Listener }

func (l lazyReadListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c, nil
	}
	lc := &lazyReadConn{TCPConn: tc, rc: rc}
	lc.readFn = lc.readOnce
	return lc, nil
}

// lazyReadConn is a server's TCP connection whose one-byte reads wait for readiness
// before read(2) (LazyBackgroundReads). Its methods are the TCPConn's but for Read;
// SyscallConn and the rest pass through.
type lazyReadConn struct {
	*net.TCPConn
	rc     syscall.RawConn
	plain  atomic.Bool // hijacked or closed: every read as the TCPConn's
	readFn func(fd uintptr) bool

	// The one-byte read in flight (net/http runs one read of a connection at a time;
	// RawConn.Read holds the descriptor's read lock around readFn's calls):
	p      []byte
	n      int
	err    error
	polled bool // the poller was waited on once
}

func (c *lazyReadConn) Read(p []byte) (int, error) {
	if len(p) != 1 || c.plain.Load() {
		return c.TCPConn.Read(p)
	}
	c.p, c.n, c.err, c.polled = p, 0, nil, false
	err := c.rc.Read(c.readFn)
	n, rerr := c.n, c.err
	c.p, c.err = nil, nil
	switch {
	case err != nil: // the deadline, or the connection closed: as net.Conn's Read says it
		return 0, err
	case rerr != nil:
		return n, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readOnce is RawConn.Read's function: false the first time (wait for the poller), then
// one read(2); false again on EAGAIN.
func (c *lazyReadConn) readOnce(fd uintptr) bool {
	if !c.polled {
		c.polled = true
		return false
	}
	for {
		n, err := syscall.Read(int(fd), c.p)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case nil:
			c.n = n
		default:
			c.err = err
		}
		return true
	}
}
