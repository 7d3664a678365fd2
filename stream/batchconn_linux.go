package stream

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// gsoControlLen is the size of one UDP_SEGMENT control message.
var gsoControlLen = unix.CmsgSpace(2)

// gsoSupported tells whether the kernel takes UDP_SEGMENT on this socket (Linux 4.18+).
func gsoSupported(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		_, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
	}); err != nil {
		return false
	}
	return serr == nil
}

// gsoControl fills b (gsoControlLen bytes) with a UDP_SEGMENT control message: the
// kernel cuts the datagram into segments of size bytes.
func gsoControl(b []byte, size int) []byte {
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	return b
}

// rawSender sends the flusher's batches with sendmmsg as a raw system call: the
// flusher's P stays with it for the call. Through x/net's WriteBatch the call is an
// ordinary blocking system call, and one sendmmsg of a batch to loopback viewers (the
// kernel delivers each datagram into its receiver's socket on the way) runs long
// enough for the runtime's sysmon to see a P in a system call with goroutines waiting:
// it hands the P to another thread (a futex wake and a context switch per call) and
// keeps itself polling every 20 µs. A sendmmsg on a non-blocking UDP socket does not
// sleep; a full socket buffer answers EAGAIN, and then the flusher waits in the
// poller as before.
type rawSender struct {
	rc syscall.RawConn
	v6 bool // an AF_INET6 socket (IPv4 destinations as mapped addresses)
	// sys makes the system call: sendmmsgRaw (a test interposes on it).
	sys   func(fd uintptr, hdrs []mmsghdr) (int, syscall.Errno)
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
}

// mmsghdr is struct mmsghdr (Go pads it to the C layout).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// newRawSender returns nil when c's family is unknown (the batcher then uses x/net).
func newRawSender(c *net.UDPConn) *rawSender {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	var sa unix.Sockaddr
	var serr error
	if err := rc.Control(func(fd uintptr) { sa, serr = unix.Getsockname(int(fd)) }); err != nil || serr != nil {
		return nil
	}
	s := &rawSender{rc: rc, sys: sendmmsgRaw}
	switch sa.(type) {
	case *unix.SockaddrInet4:
	case *unix.SockaddrInet6:
		s.v6 = true
	default:
		return nil
	}
	return s
}

var errNoSockaddr = errors.New("stream: destination not representable on the socket")

// send is WriteBatch: the number of messages sent, or an error for msgs[0].
func (s *rawSender) send(msgs []ipv4.Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	niov := 0
	for _, m := range msgs {
		niov += len(m.Buffers)
	}
	s.hdrs = slices.Grow(s.hdrs[:0], len(msgs))[:len(msgs)]
	s.names = slices.Grow(s.names[:0], len(msgs))[:len(msgs)]
	s.iovs = slices.Grow(s.iovs[:0], niov)[:niov]
	k := 0
	for i, m := range msgs {
		h := &s.hdrs[i]
		*h = mmsghdr{}
		var nl uint32
		if ua, ok := m.Addr.(*net.UDPAddr); ok && ua.Zone == "" {
			nl = s.sockaddr(&s.names[i], ua.AddrPort())
		}
		if nl == 0 {
			if i == 0 {
				return 0, errNoSockaddr
			}
			msgs = msgs[:i] // the next call reports it
			break
		}
		h.hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.hdr.Namelen = nl
		start := k
		for _, b := range m.Buffers {
			s.iovs[k] = unix.Iovec{}
			if len(b) > 0 {
				s.iovs[k].Base = &b[0]
				s.iovs[k].SetLen(len(b))
			}
			k++
		}
		if k > start {
			h.hdr.Iov = &s.iovs[start]
			h.hdr.SetIovlen(k - start)
		}
		if len(m.OOB) > 0 {
			h.hdr.Control = &m.OOB[0]
			h.hdr.SetControllen(len(m.OOB))
		}
	}
	var n int
	var errno syscall.Errno
	err := s.rc.Write(func(fd uintptr) bool {
		for {
			r, e := s.sys(fd, s.hdrs[:len(msgs)])
			switch e {
			case unix.EINTR:
				// A signal came before anything was sent: again, at once. (Not back to
				// the poller: the socket is writable, it would wait for an edge that
				// may never come.)
				continue
			case unix.EAGAIN:
				return false // wait in the poller until the socket takes more
			}
			n, errno = r, e
			return true
		}
	})
	clear(s.iovs[:k]) // no references to the batch's buffers kept
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, os.NewSyscallError("sendmmsg", errno)
	}
	return n, nil
}

// sendmmsgRaw is sendmmsg(2) of hdrs on fd as a raw system call.
func sendmmsgRaw(fd uintptr, hdrs []mmsghdr) (int, syscall.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
	return int(r), e
}

// sockaddr fills sa with ap for the socket's family; its length, 0 if it cannot.
func (s *rawSender) sockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort) uint32 {
	a := ap.Addr()
	port := ap.Port()
	if !s.v6 {
		a = a.Unmap()
		if !a.Is4() {
			return 0
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return unix.SizeofSockaddrInet6
}
