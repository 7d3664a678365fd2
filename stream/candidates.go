package stream

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
)

// DefaultMaxRemoteCandidates bounds the distinct remote ICE candidates one session may
// be given, in its offer and its trickle PATCHes together (Options.MaxRemoteCandidates).
// The relay sends connectivity checks to every one of them for up to the ICE timeouts:
// an anonymous WHEP offer listing hundreds of made-up addresses would turn the relay
// into a reflector aimed at them. A real peer gives a handful: a browser a host
// candidate per interface and address family (libwebrtc keeps at most 5 IPv6
// networks), a server-reflexive one per STUN server and a relay one per TURN server and
// transport; OBS (libdatachannel) and pion likewise. 50 leaves room for a machine with
// many interfaces and TURN over every transport.
const DefaultMaxRemoteCandidates = 50

// ErrTooManyCandidates: an offer or a trickle fragment would give a session more
// distinct remote candidates than Options.MaxRemoteCandidates. It comes wrapped in
// ErrBadOffer or ErrBadFragment.
var ErrTooManyCandidates = errors.New("too many ICE candidates")

// candidateSet is the distinct remote candidates (transport, address, port) a session
// has been given, bounded by limit. Repeats, such as the same candidate listed under
// every bundled m-section or sent again by trickle, count once.
type candidateSet struct {
	limit int
	mu    sync.Mutex
	seen  map[string]struct{} // guarded by mu
}

func newCandidateSet(limit int) *candidateSet {
	return &candidateSet{limit: limit, seen: map[string]struct{}{}}
}

// add takes keys (candidateKey) all or none: a batch that would pass the limit adds
// nothing and is ErrTooManyCandidates.
func (s *candidateSet) add(keys []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fresh := map[string]struct{}{}
	for _, k := range keys {
		if _, ok := s.seen[k]; !ok {
			fresh[k] = struct{}{}
		}
	}
	if n := len(s.seen) + len(fresh); n > s.limit {
		return fmt.Errorf("%w: the session would have %d distinct remote candidates, at most %d are taken", ErrTooManyCandidates, n, s.limit)
	}
	for k := range fresh {
		s.seen[k] = struct{}{}
	}
	return nil
}

// candidateKey reads a candidate attribute's value ("candidate:<foundation>
// <component> <transport> <priority> <address> <port> typ <type> ...", RFC 8839) and
// returns what names its destination: transport, address and port. useless reports a
// UDP candidate no real peer gives and the relay must never send checks to: port 0, an
// unspecified, multicast or broadcast address. A value too short to read keys as
// itself (pion then refuses it).
func candidateKey(value string) (key string, useless bool) {
	f := strings.Fields(strings.TrimPrefix(value, "candidate:"))
	if len(f) < 6 {
		return value, false
	}
	transport, addr, port := strings.ToLower(f[2]), f[4], f[5]
	if transport == "udp" {
		ip := net.ParseIP(addr)
		useless = port == "0" || ip != nil && (ip.IsUnspecified() || ip.IsMulticast() || ip.Equal(net.IPv4bcast))
	}
	return transport + " " + addr + " " + port, useless
}

// screenOffer drops the useless candidates (candidateKey) from an offer and lists the
// distinct keys of the others: more than limit is ErrBadOffer (ErrTooManyCandidates).
func screenOffer(offer string, limit int) (string, []string, error) {
	lines := strings.SplitAfter(offer, "\n")
	kept := lines[:0:0]
	var keys []string
	seen := map[string]struct{}{}
	dropped := false
	for _, line := range lines {
		value, ok := strings.CutPrefix(strings.TrimSpace(line), "a=")
		if ok && strings.HasPrefix(value, "candidate:") {
			key, useless := candidateKey(value)
			if useless {
				dropped = true
				continue
			}
			if _, ok := seen[key]; !ok {
				seen[key] = struct{}{}
				keys = append(keys, key)
			}
		}
		kept = append(kept, line)
	}
	if len(keys) > limit {
		return "", nil, fmt.Errorf("%w: %w: the offer has %d distinct candidates, at most %d are taken", ErrBadOffer, ErrTooManyCandidates, len(keys), limit)
	}
	if dropped {
		offer = strings.Join(kept, "")
	}
	return offer, keys, nil
}
