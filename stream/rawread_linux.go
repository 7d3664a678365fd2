package stream

import (
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawReader reads the relay's UDP socket with recvfrom as a raw system call, for
// pion's ICE mux, whose one goroutine reads every datagram the relay receives (the
// publishers' media, the viewers' RTCP and STUN). Through net.UDPConn each read is an
// ordinary system call: the runtime marks the P as in a system call, and when every P
// was idle (between a paced publisher's bursts, many times a second) that wakes
// sysmon from its deep sleep and resets it to polling every 20 µs for at least a
// millisecond: ~11 % of the relay's CPU at 100 paced viewers was sysmon's sleeps and
// wake-ups. recvfrom on the non-blocking socket does not sleep; an empty socket
// (EAGAIN) waits in the poller as before, deadlines included.
type rawReader struct {
	mu    sync.Mutex // one read at a time: the fields below
	rc    syscall.RawConn
	fn    func(fd uintptr) bool // r.read, bound once (no closure per read)
	laddr net.Addr
	buf   []byte
	n     int
	errno syscall.Errno
	sa    unix.RawSockaddrAny
	salen uint32
}

// newRawReader returns nil if c has no raw connection (the socket's own reads then).
func newRawReader(c *net.UDPConn) *rawReader {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawReader{rc: rc, laddr: c.LocalAddr()}
	r.fn = r.read
	return r
}

// ReadFrom is net.UDPConn's ReadFrom (the same address and errors) without the
// runtime's system call bookkeeping.
func (c *batchConn) ReadFrom(p []byte) (int, net.Addr, error) {
	r := c.rd
	if r == nil {
		return c.UDPConn.ReadFrom(p)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = p
	err := r.rc.Read(r.fn)
	r.buf = nil
	if err == nil && r.errno != 0 {
		err = os.NewSyscallError("recvfrom", r.errno)
	}
	if err != nil {
		return 0, nil, &net.OpError{Op: "read", Net: "udp", Source: r.laddr, Err: err}
	}
	addr := r.addr()
	if addr == nil {
		return r.n, nil, nil // not an IP sender (cannot happen on a UDP socket)
	}
	return r.n, addr, nil
}

// read is one recvfrom; false: nothing to read yet (wait in the poller).
func (r *rawReader) read(fd uintptr) bool {
	var zero byte
	base := unsafe.Pointer(&zero)
	if len(r.buf) > 0 {
		base = unsafe.Pointer(&r.buf[0])
	}
	for {
		r.salen = unix.SizeofSockaddrAny
		n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(base), uintptr(len(r.buf)), 0,
			uintptr(unsafe.Pointer(&r.sa)), uintptr(unsafe.Pointer(&r.salen)))
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		r.n, r.errno = int(n), e
		if e != 0 {
			r.n = 0
		}
		return true
	}
}

// addr is the sender of the datagram read, as net.UDPConn reports it (a 16-byte IP
// from an IPv6 socket, an IPv4 one's 4 bytes).
func (r *rawReader) addr() *net.UDPAddr {
	switch r.sa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.sa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		ip := make(net.IP, 4)
		copy(ip, sa.Addr[:])
		return &net.UDPAddr{IP: ip, Port: int(p[0])<<8 | int(p[1])}
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&r.sa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		ip := make(net.IP, 16)
		copy(ip, sa.Addr[:])
		ua := &net.UDPAddr{IP: ip, Port: int(p[0])<<8 | int(p[1])}
		if sa.Scope_id != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.Scope_id)); err == nil {
				ua.Zone = ifi.Name
			} else {
				ua.Zone = strconv.Itoa(int(sa.Scope_id))
			}
		}
		return ua
	}
	return nil
}
