package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/livecart/livecart/stream/rtctest"
	"github.com/pion/webrtc/v3"
)

// madeUpCandidates returns n distinct host candidates on loopback (ports from first
// on), as lines for an offer or a fragment. Nothing listens there.
func madeUpCandidates(n, first int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf("a=candidate:x%d 1 udp 2130706431 127.0.0.1 %d typ host", i, first+i)
	}
	return lines
}

// withCandidates adds lines after the offer's first candidate.
func withCandidates(offer string, lines []string) string {
	i := strings.Index(offer, "a=candidate:")
	j := i + strings.Index(offer[i:], "\n") + 1
	return offer[:j] + strings.Join(lines, "\r\n") + "\r\n" + offer[j:]
}

// offerCandidates counts the distinct candidates of an offer.
func offerCandidates(t *testing.T, offer string) int {
	t.Helper()
	_, keys, err := screenOffer(offer, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

// TestOfferCandidateBound: an offer (WHEP or WHIP) with more distinct remote
// candidates than MaxRemoteCandidates is refused before any session exists; one at the
// bound connects and gets media; a candidate repeated counts once.
func TestOfferCandidateBound(t *testing.T) {
	const limit = 8
	r, _ := newTestRelay(t, Options{MaxRemoteCandidates: limit})
	_, _, stopPub := startPublisher(t, r, "s1")
	defer stopPub()

	connect := func(extra []string) (*rtctest.Viewer, error) {
		v, err := rtctest.NewViewer(api(t), false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = v.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), slow(10*time.Second))
		defer cancel()
		return v, v.Connect(ctx, func(ctx context.Context, offer string) (string, error) {
			own := offerCandidates(t, offer)
			if own >= limit {
				t.Fatalf("the peer's own offer has %d candidates, the test wants fewer than %d", own, limit)
			}
			lines := extra
			if lines == nil { // fill up to the bound exactly, each twice
				lines = madeUpCandidates(limit-own, 19300)
				lines = append(lines, lines...)
			}
			offer = withCandidates(offer, lines)
			if err := r.CheckOffer(offer, RoleViewer); err != nil && extra == nil {
				t.Errorf("CheckOffer at the bound: got %v, want nil", err)
			}
			ans, _, err := r.Subscribe(ctx, "s1", offer)
			return ans, err
		})
	}

	_, err := connect(madeUpCandidates(limit, 19300))
	if !errors.Is(err, ErrBadOffer) || !errors.Is(err, ErrTooManyCandidates) {
		t.Fatalf("viewer offer over the bound: got %v, want ErrBadOffer and ErrTooManyCandidates", err)
	}
	if n := r.Viewers("s1"); n != 0 {
		t.Fatalf("viewers after a refused offer: got %d, want 0", n)
	}
	v, err := connect(nil)
	if err != nil {
		t.Fatalf("viewer offer at the bound: got %v, want a session", err)
	}
	receiving(t, v, 10, "media at a viewer whose offer is at the bound")

	pub, err := rtctest.NewPublisher(api(t), light)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = pub.Connect(ctx, func(ctx context.Context, offer string) (string, error) {
		offer = withCandidates(offer, madeUpCandidates(limit, 19320))
		if err := r.CheckOffer(offer, RolePublisher); !errors.Is(err, ErrTooManyCandidates) {
			t.Errorf("CheckOffer of a publisher's offer over the bound: got %v, want ErrTooManyCandidates", err)
		}
		ans, _, err := r.Publish(ctx, "s2", offer)
		return ans, err
	})
	if !errors.Is(err, ErrBadOffer) || !errors.Is(err, ErrTooManyCandidates) {
		t.Fatalf("publisher offer over the bound: got %v, want ErrBadOffer and ErrTooManyCandidates", err)
	}
	if r.Live("s2") {
		t.Fatal("a publisher whose offer was refused took the stream live")
	}
}

// TestTrickleCandidateBound: trickle PATCHes add to the offer's candidates; the one
// that would pass the bound is refused whole (none of its candidates taken, the
// session goes on), and a smaller one still fits afterwards.
func TestTrickleCandidateBound(t *testing.T) {
	const limit = 8
	r, _ := newTestRelay(t, Options{MaxRemoteCandidates: limit})
	_, _, stopPub := startPublisher(t, r, "s1")
	defer stopPub()
	v, rid := startViewer(t, r, "s1")
	own := offerCandidates(t, v.PC.LocalDescription().SDP)
	room := limit - own
	if room < 3 {
		t.Fatalf("the peer's own offer has %d candidates, the test wants at most %d", own, limit-3)
	}
	ufrag := sdpAttr(v.PC.LocalDescription().SDP, "ice-ufrag")
	frag := func(lines []string) string {
		return "a=ice-ufrag:" + ufrag + "\r\na=mid:0\r\n" + strings.Join(lines, "\r\n") + "\r\n"
	}
	made := madeUpCandidates(room+1, 19340)
	if err := r.Patch("s1", rid, RoleViewer, frag(made[:room-2])); err != nil {
		t.Fatalf("PATCH within the bound: got %v, want nil", err)
	}
	// Three more would pass it by one; two of them were not sent before either.
	err := r.Patch("s1", rid, RoleViewer, frag(made[room-2:]))
	if !errors.Is(err, ErrBadFragment) || !errors.Is(err, ErrTooManyCandidates) {
		t.Fatalf("PATCH past the bound: got %v, want ErrBadFragment and ErrTooManyCandidates", err)
	}
	// Candidates already given count once; two new ones fill the bound exactly.
	if err := r.Patch("s1", rid, RoleViewer, frag(append(made[:room-2:room-2], made[room-2:room]...))); err != nil {
		t.Fatalf("PATCH up to the bound after a refused one: got %v, want nil", err)
	}
	if err := r.Patch("s1", rid, RoleViewer, frag(made[room:])); !errors.Is(err, ErrTooManyCandidates) {
		t.Fatalf("PATCH of one more at the bound: got %v, want ErrTooManyCandidates", err)
	}
	receiving(t, v, 10, "media at a viewer after its refused PATCH")
}

// TestUselessCandidatesIgnored: UDP candidates at port 0 or at an unspecified,
// multicast or broadcast address are dropped from an offer and a fragment (the relay
// never checks them) and do not count toward the bound.
func TestUselessCandidatesIgnored(t *testing.T) {
	r, _ := newTestRelay(t, Options{MaxRemoteCandidates: 6})
	useless := []string{
		"a=candidate:u1 1 udp 2130706431 224.0.0.251 19360 typ host",
		"a=candidate:u2 1 udp 2130706431 255.255.255.255 19360 typ host",
		"a=candidate:u3 1 udp 2130706431 0.0.0.0 19360 typ host",
		"a=candidate:u4 1 udp 2130706431 127.0.0.1 0 typ host",
		"a=candidate:u5 1 UDP 2130706431 ff02::1 19360 typ host",
		"a=candidate:u6 1 udp 2130706431 :: 19360 typ host",
		"a=candidate:u7 1 udp 2130706431 239.1.2.3 19361 typ srflx raddr 0.0.0.0 rport 0",
	}
	v, err := rtctest.NewViewer(api(t), false)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx, cancel := context.WithTimeout(context.Background(), slow(10*time.Second))
	defer cancel()
	var rid string
	err = v.Connect(ctx, func(ctx context.Context, offer string) (string, error) {
		ans, id, err := r.Subscribe(ctx, "s1", withCandidates(offer, useless))
		rid = id
		return ans, err
	})
	if err != nil {
		t.Fatalf("offer with useless candidates: got %v, want a session", err)
	}
	ufrag := sdpAttr(v.PC.LocalDescription().SDP, "ice-ufrag")
	if err := r.Patch("s1", rid, RoleViewer, "a=ice-ufrag:"+ufrag+"\r\na=mid:0\r\n"+strings.Join(useless, "\r\n")+"\r\n"); err != nil {
		t.Fatalf("PATCH of useless candidates: got %v, want nil", err)
	}
	pc := r.existingRoom("s1").sessionPC(rid, RoleViewer)
	for _, s := range pc.GetStats() {
		c, ok := s.(webrtc.ICECandidateStats)
		if ok && c.Type == webrtc.StatsTypeRemoteCandidate && (c.Port == 0 || c.Port == 19360 || c.Port == 19361) {
			t.Errorf("the relay took the useless remote candidate %s:%d", c.IP, c.Port)
		}
	}
}

// TestCandidateKey: what names a candidate's destination, and what is useless.
func TestCandidateKey(t *testing.T) {
	cases := []struct {
		value, key string
		useless    bool
	}{
		{"candidate:1 1 udp 2130706431 192.0.2.7 5000 typ host", "udp 192.0.2.7 5000", false},
		{"candidate:2 1 UDP 1694498815 198.51.100.1 6000 typ srflx raddr 10.0.0.1 rport 5000", "udp 198.51.100.1 6000", false},
		{"candidate:3 1 tcp 1518280447 192.0.2.7 9 typ host tcptype active", "tcp 192.0.2.7 9", false},
		{"candidate:4 1 tcp 1518280447 0.0.0.0 0 typ host tcptype active", "tcp 0.0.0.0 0", false},
		{"candidate:5 1 udp 2130706431 abcd.local 5000 typ host", "udp abcd.local 5000", false},
		{"candidate:6 1 udp 2130706431 224.0.0.1 5000 typ host", "udp 224.0.0.1 5000", true},
		{"candidate:7 1 udp 2130706431 192.0.2.7 0 typ host", "udp 192.0.2.7 0", true},
		{"candidate:short", "candidate:short", false},
	}
	for _, c := range cases {
		key, useless := candidateKey(c.value)
		if key != c.key || useless != c.useless {
			t.Errorf("candidateKey(%q) = %q, %v; want %q, %v", c.value, key, useless, c.key, c.useless)
		}
	}
}
