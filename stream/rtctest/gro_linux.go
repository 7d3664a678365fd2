//go:build linux

package rtctest

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/pion/transport/v2"
	"github.com/pion/transport/v2/stdnet"
)

// UDP generic receive offload for the load generator's viewers. The relay sends each
// viewer's consecutive equal-sized packets as one UDP GSO train; a receiving socket
// without UDP_GRO makes the kernel split the train and queue every packet, so each
// packet costs the viewer a recvmsg and a wake-up. With UDP_GRO on, the socket queues
// the train whole, one recvmsg reads it, and groConn hands its packets to pion one by
// one from ReadFrom: every packet still goes through ICE, DTLS/SRTP and the
// interceptors as before.

const (
	solUDP = 17  // SOL_UDP
	udpGRO = 104 // UDP_GRO
)

// groStats counts what the GRO sockets read (for tests).
var groStats struct {
	reads, packets atomic.Int64
}

// groNet is pion's standard network with UDP_GRO on every UDP socket it opens.
type groNet struct {
	*stdnet.Net
}

func newGRONet() (transport.Net, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return groNet{n}, nil
}

func (n groNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	if !enableGRO(c) {
		return c, nil
	}
	return &groConn{UDPConn: c, buf: make([]byte, 1<<16), oob: make([]byte, 64)}, nil
}

func (n groNet) ListenPacket(network, address string) (net.PacketConn, error) {
	a, err := net.ResolveUDPAddr(network, address)
	if err != nil || (network != "udp" && network != "udp4" && network != "udp6") {
		return n.Net.ListenPacket(network, address)
	}
	return n.ListenUDP(network, a)
}

func enableGRO(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), solUDP, udpGRO, 1)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// groConn reads coalesced trains and returns their packets one per ReadFrom.
type groConn struct {
	*net.UDPConn

	mu      sync.Mutex // ReadFrom callers (pion has one per socket)
	buf     []byte
	oob     []byte
	pending []byte // the train's packets not yet returned
	seg     int    // their size (the last may be shorter)
	from    net.Addr
}

func (c *groConn) ReadFrom(p []byte) (int, net.Addr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		n, oobn, _, from, err := c.UDPConn.ReadMsgUDP(c.buf, c.oob)
		if err != nil {
			return 0, nil, err
		}
		groStats.reads.Add(1)
		c.pending, c.from = c.buf[:n], from
		c.seg = groSegment(c.oob[:oobn])
		if c.seg <= 0 || c.seg > n {
			c.seg = n
		}
	}
	k := min(c.seg, len(c.pending))
	n := copy(p, c.pending[:k])
	c.pending = c.pending[k:]
	groStats.packets.Add(1)
	return n, c.from, nil
}

// groSegment returns the segment size from a UDP_GRO control message, 0 if none.
func groSegment(oob []byte) int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if m.Header.Level == solUDP && m.Header.Type == udpGRO && len(m.Data) >= 4 {
			return int(binary.NativeEndian.Uint32(m.Data))
		}
	}
	return 0
}
