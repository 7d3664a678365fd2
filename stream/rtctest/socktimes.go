package rtctest

import (
	"encoding/binary"
	"net/netip"
	"sync"
)

// Socket arrival times. A viewer's latency read after pion returns a packet includes the
// viewer's own work: the wait for its goroutine, SRTP decryption, the interceptors. On a
// machine shared by the relay and a load generator running hundreds of viewers, that part
// can dominate the tail. The kernel stamps each datagram when it arrives (SO_TIMESTAMPNS,
// Linux); a socket of an API made with SocketTimes keeps that time for its recent RTP
// packets, keyed by SSRC and sequence number (both in clear in SRTP), and the viewer
// reading the packet after decryption looks it up: publisher send → arrival at the
// viewer's socket, without the viewer's side.

// SocketTimes keeps the kernel receive times of the RTP packets arriving at the sockets of
// the API it is given to (APIOptions.SocketTimes), per socket, for the viewers made with
// it (ViewerOptions.SocketTimes). Safe for concurrent use.
type SocketTimes struct {
	mu     sync.Mutex
	byAddr map[netip.AddrPort]*arrivalRing // open sockets by local address, guarded by mu
}

// NewSocketTimes returns an empty registry.
func NewSocketTimes() *SocketTimes {
	return &SocketTimes{byAddr: map[netip.AddrPort]*arrivalRing{}}
}

// open registers a socket bound to addr and returns its ring.
func (s *SocketTimes) open(addr netip.AddrPort) *arrivalRing {
	r := &arrivalRing{}
	s.mu.Lock()
	s.byAddr[unmapped(addr)] = r
	s.mu.Unlock()
	return r
}

// close forgets the socket at addr if r is still the one registered there.
func (s *SocketTimes) close(addr netip.AddrPort, r *arrivalRing) {
	addr = unmapped(addr)
	s.mu.Lock()
	if s.byAddr[addr] == r {
		delete(s.byAddr, addr)
	}
	s.mu.Unlock()
}

// socket returns the ring of the open socket bound to addr, nil if none.
func (s *SocketTimes) socket(addr netip.AddrPort) *arrivalRing {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byAddr[unmapped(addr)]
}

// unmapped keys an IPv4 address one way whether it came as 4 bytes or IPv4-in-IPv6.
func unmapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// Sockets returns how many open sockets keep times.
func (s *SocketTimes) Sockets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byAddr)
}

const (
	// ringStreams is how many SSRCs a socket keeps times for (a viewer gets audio and
	// video; the least recently used gives way to a new one).
	ringStreams = 4
	// ringSlots is how many recent packets per SSRC are kept, by sequence number: 512
	// are ~2 s of 2 Mb/s video, far more than a packet waits between the socket and the
	// viewer's read. 20 KiB per socket.
	ringSlots = 512
)

// arrivalRing holds one socket's recent arrival times, bounded: a slot is reused by the
// sequence number ringSlots later.
type arrivalRing struct {
	mu      sync.Mutex
	streams [ringStreams]arrivalStream // guarded by mu
	uses    uint64                     // guarded by mu
}

type arrivalStream struct {
	ssrc    uint32
	lastUse uint64 // 0: free
	seq     [ringSlots]uint16
	at      [ringSlots]int64 // Unix ns; 0: empty
}

// note records that the RTP packet (ssrc, seq) arrived at at (Unix ns).
func (r *arrivalRing) note(ssrc uint32, seq uint16, at int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.uses++
	var s *arrivalStream
	for i := range r.streams {
		c := &r.streams[i]
		if c.lastUse != 0 && c.ssrc == ssrc {
			s = c
			break
		}
		if s == nil || c.lastUse < s.lastUse {
			s = c // the free or least recently used one, if ssrc is new
		}
	}
	if s.lastUse == 0 || s.ssrc != ssrc {
		*s = arrivalStream{ssrc: ssrc}
	}
	s.lastUse = r.uses
	i := seq % ringSlots
	s.seq[i], s.at[i] = seq, at
}

// lookup returns when the RTP packet (ssrc, seq) arrived (Unix ns), false if it is not
// kept (never seen, or its slot reused).
func (r *arrivalRing) lookup(ssrc uint32, seq uint16) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.streams {
		s := &r.streams[i]
		if s.lastUse == 0 || s.ssrc != ssrc {
			continue
		}
		j := seq % ringSlots
		if s.at[j] == 0 || s.seq[j] != seq {
			return 0, false
		}
		return s.at[j], true
	}
	return 0, false
}

// noteDatagram records a datagram's arrival if it is RTP (not RTCP, STUN or DTLS).
func (r *arrivalRing) noteDatagram(b []byte, at int64) {
	if ssrc, seq, ok := rtpKey(b); ok {
		r.note(ssrc, seq, at)
	}
}

// rtpKey returns the SSRC and sequence number of an RTP or SRTP packet; false for
// anything else on the socket (RFC 7983: STUN 0–3 and DTLS 20–63 in the first byte;
// RTCP by its packet type 192–223 in the second, where RTP has its marker and payload
// type).
func rtpKey(b []byte) (ssrc uint32, seq uint16, ok bool) {
	if len(b) < 12 || b[0]>>6 != 2 || (b[1] >= 192 && b[1] <= 223) {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint16(b[2:]), true
}
