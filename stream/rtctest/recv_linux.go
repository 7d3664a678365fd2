//go:build linux

package rtctest

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/pion/transport/v2"
	"github.com/pion/transport/v2/stdnet"
)

// The load generator's viewer sockets, two options on pion's standard network.
//
// UDP generic receive offload (GRO): the relay sends each viewer's consecutive
// equal-sized packets as one UDP GSO train; a receiving socket without UDP_GRO makes the
// kernel split the train and queue every packet, so each packet costs the viewer a
// recvmsg and a wake-up. With UDP_GRO on, the socket queues the train whole, one recvmsg
// reads it, and recvConn hands its packets to pion one by one from ReadFrom: every
// packet still goes through ICE, DTLS/SRTP and the interceptors as before.
//
// Socket times (SocketTimes): SO_TIMESTAMPNS makes the kernel pass each datagram's
// receive time (CLOCK_REALTIME, the clock of the publisher's stamps) with it; recvConn
// keeps it for the socket's RTP packets (a GRO train's packets share one). The kernel
// turns stamping on arrival on a moment after the first socket on the machine asks
// (deferred work flips a static key); datagrams read before that are stamped when read,
// which only the first milliseconds of the first viewer can see.

const (
	solUDP = 17  // SOL_UDP
	udpGRO = 104 // UDP_GRO
)

// groStats counts what the GRO sockets read (for tests).
var groStats struct {
	reads, packets atomic.Int64
}

// recvNet is pion's standard network with UDP_GRO and/or receive times on every UDP
// socket it opens.
type recvNet struct {
	*stdnet.Net
	gro   bool
	times *SocketTimes // nil: no receive times
}

func newRecvNet(gro bool, times *SocketTimes) (transport.Net, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return recvNet{Net: n, gro: gro, times: times}, nil
}

func (n recvNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	gro := n.gro && setSockopt(c, solUDP, udpGRO)
	stamps := n.times != nil && setSockopt(c, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS)
	if !gro && !stamps {
		return c, nil
	}
	rc := &recvConn{UDPConn: c, buf: make([]byte, 1<<16), oob: make([]byte, 128)}
	if stamps {
		rc.local = c.LocalAddr().(*net.UDPAddr).AddrPort()
		rc.times, rc.ring = n.times, n.times.open(rc.local)
	}
	return rc, nil
}

func (n recvNet) ListenPacket(network, address string) (net.PacketConn, error) {
	a, err := net.ResolveUDPAddr(network, address)
	if err != nil || (network != "udp" && network != "udp4" && network != "udp6") {
		return n.Net.ListenPacket(network, address)
	}
	return n.ListenUDP(network, a)
}

// setSockopt sets an integer socket option to 1; false if the kernel refused it.
func setSockopt(c *net.UDPConn, level, opt int) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), level, opt, 1)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// recvConn reads coalesced trains and returns their packets one per ReadFrom, noting
// the RTP packets' receive times when it keeps them.
type recvConn struct {
	*net.UDPConn
	times *SocketTimes // nil: no receive times
	ring  *arrivalRing // this socket's times in times
	local netip.AddrPort

	mu      sync.Mutex // ReadFrom callers (pion has one per socket)
	buf     []byte
	oob     []byte
	pending []byte // the train's packets not yet returned
	seg     int    // their size (the last may be shorter)
	at      int64  // their receive time, Unix ns (0: none)
	from    net.Addr
}

func (c *recvConn) ReadFrom(p []byte) (int, net.Addr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		n, oobn, _, from, err := c.UDPConn.ReadMsgUDP(c.buf, c.oob)
		if err != nil {
			return 0, nil, err
		}
		groStats.reads.Add(1)
		c.pending, c.from = c.buf[:n], from
		c.seg, c.at = parseControl(c.oob[:oobn])
		if c.seg <= 0 || c.seg > n {
			c.seg = n
		}
	}
	k := min(c.seg, len(c.pending))
	n := copy(p, c.pending[:k])
	c.pending = c.pending[k:]
	groStats.packets.Add(1)
	if c.ring != nil && c.at != 0 {
		c.ring.noteDatagram(p[:n], c.at)
	}
	return n, c.from, nil
}

// Close closes the socket and forgets its receive times.
func (c *recvConn) Close() error {
	if c.times != nil {
		c.times.close(c.local, c.ring)
	}
	return c.UDPConn.Close()
}

// parseControl returns the segment size of a UDP_GRO control message (0 if none) and
// the receive time of an SCM_TIMESTAMPNS one (Unix ns, 0 if none).
func parseControl(oob []byte) (seg int, at int64) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, 0
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == solUDP && m.Header.Type == udpGRO && len(m.Data) >= 4:
			seg = int(binary.NativeEndian.Uint32(m.Data))
		case m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SCM_TIMESTAMPNS:
			at = timespecNanos(m.Data)
		}
	}
	return seg, at
}

// timespecNanos reads a struct timespec of this platform (two 64- or 32-bit fields).
func timespecNanos(d []byte) int64 {
	switch len(d) {
	case 16:
		return int64(binary.NativeEndian.Uint64(d))*1e9 + int64(binary.NativeEndian.Uint64(d[8:]))
	case 8:
		return int64(int32(binary.NativeEndian.Uint32(d)))*1e9 + int64(int32(binary.NativeEndian.Uint32(d[4:])))
	}
	return 0
}
