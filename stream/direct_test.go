package stream

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v2"
	"github.com/pion/webrtc/v3"
)

// serverViewer returns the relay's side of viewer rid.
func serverViewer(t *testing.T, r *Relay, sid, rid string) *viewer {
	t.Helper()
	rm := r.existingRoom(sid)
	if rm == nil {
		t.Fatalf("no room %s", sid)
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	v := rm.viewers[rid]
	if v == nil {
		t.Fatalf("no viewer %s", rid)
	}
	return v
}

func udpPair(remote string, port uint16) *webrtc.ICECandidatePair {
	return &webrtc.ICECandidatePair{
		Local:  &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolUDP, Address: "127.0.0.1", Port: 5000},
		Remote: &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolUDP, Address: remote, Port: port},
	}
}

// TestDirectViewerNeverFallsBack: a viewer on the relay's own SRTP output whose
// selected pair changes (pion's pair change handler, called as pion calls it) to one
// the relay cannot write to gets nothing through pion's write chain (pion's SRTP
// context would restart the rollover count at 0 and encrypt indices the relay has
// used): its packets are dropped and counted, and once the pair is one the relay can
// write to again, they flow again, directly.
func TestDirectViewerNeverFallsBack(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	startPublisher(t, r, "s1")
	v, rid := startViewer(t, r, "s1")
	receiving(t, v, 10, "viewer")
	if !writesDirect(r, "s1", rid) {
		t.Fatal("viewer written through pion's chain, want the relay's own SRTP output")
	}
	sv := serverViewer(t, r, "s1", rid)
	pair, err := sv.transport.ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("selected pair: %v, %v", pair, err)
	}

	sv.setRemote(udpPair("viewer.local", 9)) // a remote that is not an IP address
	time.Sleep(slow(200 * time.Millisecond)) // what was queued before goes out
	before, sentBefore := v.Stats(), sv.sent[kindAudio].Load()+sv.sent[kindVideo].Load()
	dropped0 := testutilValue(r.metrics.directDropped)
	time.Sleep(slow(600 * time.Millisecond)) // 15 fps video and 50 pps audio go on
	after, sentAfter := v.Stats(), sv.sent[kindAudio].Load()+sv.sent[kindVideo].Load()
	if got := after.Audio.Packets + after.Video.Packets - before.Audio.Packets - before.Video.Packets; got != 0 {
		t.Errorf("viewer received %d packets while its pair was not writable, want 0 (pion's chain must not be used)", got)
	}
	if sentAfter != sentBefore {
		t.Errorf("relay counted %d packets written while the pair was not writable, want 0", sentAfter-sentBefore)
	}
	if d := testutilValue(r.metrics.directDropped) - dropped0; d < 10 {
		t.Errorf("%v packets counted as dropped for an unwritable pair, want >= 10", d)
	}
	if sv.direct() == nil {
		t.Error("the viewer lost its own SRTP output")
	}

	sv.setRemote(pair) // the pair is writable again: direct writes resume
	s := receiving(t, v, 10, "viewer after the pair came back")
	if !writesDirect(r, "s1", rid) {
		t.Error("viewer not back on the relay's own SRTP output")
	}
	t.Logf("dropped %v; viewer audio %d/%d video %d/%d packets/expected", testutilValue(r.metrics.directDropped),
		s.Audio.Packets, s.Audio.Expected, s.Video.Packets, s.Video.Expected)
}

// TestRemoteFollowsPairChanges: the remote end the relay writes a viewer to is the
// newest selected pair's. setupDirect reads the pair from the ICE transport when the
// change handler has not run yet; the handler, running meanwhile with a newer pair,
// may store it before that read's result lands (adoptPair): the handler's stays.
func TestRemoteFollowsPairChanges(t *testing.T) {
	ap := func(a *remoteAddr) string {
		if !a.usable() {
			return "unusable"
		}
		return a.ap.String()
	}
	v := &viewer{}
	v.setRemote(udpPair("127.0.0.2", 2002)) // the handler: a newer pair
	v.adoptPair(udpPair("127.0.0.1", 1001)) // setup's read of the older one lands late
	if got := ap(v.remote.Load()); got != "127.0.0.2:2002" {
		t.Errorf("handler's pair then setup's older read: remote %s, want 127.0.0.2:2002", got)
	}

	v = &viewer{}
	v.setRemote(udpPair("viewer.local", 9)) // newer and unusable
	v.adoptPair(udpPair("127.0.0.1", 1001))
	if got := ap(v.remote.Load()); got != "unusable" {
		t.Errorf("handler's unusable pair then setup's older read: remote %s, want unusable", got)
	}

	v = &viewer{}
	v.adoptPair(udpPair("127.0.0.1", 1001)) // setup first
	if got := ap(v.remote.Load()); got != "127.0.0.1:1001" {
		t.Errorf("setup's read alone: remote %s, want 127.0.0.1:1001", got)
	}
	v.setRemote(udpPair("::ffff:127.0.0.3", 3003)) // then a change
	if got := ap(v.remote.Load()); got != "127.0.0.3:3003" {
		t.Errorf("after a change: remote %s, want 127.0.0.3:3003", got)
	}
	v.setRemote(&webrtc.ICECandidatePair{
		Local:  &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolUDP, Address: "127.0.0.1"},
		Remote: &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolTCP, Address: "127.0.0.1", Port: 9},
	})
	if got := ap(v.remote.Load()); got != "unusable" {
		t.Errorf("a TCP remote: %s, want unusable", got)
	}
}

// TestDirectRemoteIsViewersAddress: with real peers, the remote end the relay writes a
// direct viewer to is the address the viewer's selected pair receives on.
func TestDirectRemoteIsViewersAddress(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	startPublisher(t, r, "s1")
	v, rid := startViewer(t, r, "s1")
	receiving(t, v, 10, "viewer")
	sv := serverViewer(t, r, "s1", rid)
	if sv.direct() == nil {
		t.Fatal("viewer not on the relay's own SRTP output")
	}
	pair, err := v.PC.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("viewer's selected pair: %v, %v", pair, err)
	}
	ip, err := netip.ParseAddr(pair.Local.Address)
	if err != nil {
		t.Fatal(err)
	}
	want := netip.AddrPortFrom(ip.Unmap(), pair.Local.Port)
	if got := sv.remote.Load(); !got.usable() || got.ap != want {
		t.Errorf("relay writes the viewer to %v, want %v (the viewer's selected local candidate)", got.ap, want)
	}
}

// TestDroppedPacketsKeepTheRolloverCount: packets a direct viewer's writer numbered
// but dropped (its pair not writable) still advance the SRTP context's packet index.
// srtp infers the rollover count from the last packet it encrypted, within 2^15: a
// context that saw none of the dropped packets, after 35,536 of them (seq 40001 on
// through the wrap to 10000), would encrypt seq 10001 with rollover count 0, an index
// the output used before it wrapped (a second payload under one keystream / GCM
// nonce), instead of 1.
func TestDroppedPacketsKeepTheRolloverCount(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key, salt := make([]byte, 16), make([]byte, 12)
	for i := range key {
		key[i] = byte(i + 1)
	}
	prof := srtp.ProtectionProfileAeadAes128Gcm
	d, err := newDirectOut(key, salt, prof, r.out)
	if err != nil {
		t.Fatal(err)
	}
	if d.gcm == nil {
		t.Fatal("an AES-GCM output without the relay's own sealer")
	}
	v := &viewer{room: &room{relay: r}}
	v.directOnce.Do(func() { v.dout = d })
	writable := pairRemote(udpPair("127.0.0.1", uint16(conn.LocalAddr().(*net.UDPAddr).Port)))
	const ssrc = 0x1234
	send := func(seq uint16) error {
		h := &rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 90, SSRC: ssrc}
		return v.writeRTP(nil, h, []byte{1, 2, 3, 4, 5, 6, 7, 8}, nil)
	}
	// decrypts reads the next datagram and tells whether it decrypts under rollover
	// count roc.
	decrypts := func(wantSeq uint16, roc uint32) bool {
		t.Helper()
		buf := make([]byte, 1500)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("seq %d not received: %v", wantSeq, err)
		}
		rx, err := srtp.CreateContext(key, salt, prof)
		if err != nil {
			t.Fatal(err)
		}
		rx.SetROC(ssrc, roc)
		var h rtp.Header
		if _, err := rx.DecryptRTP(nil, buf[:n], &h); err != nil {
			return false
		}
		if h.SequenceNumber != wantSeq {
			t.Fatalf("received seq %d, want %d", h.SequenceNumber, wantSeq)
		}
		return true
	}

	v.remote.Store(writable)
	if err := send(40000); err != nil {
		t.Fatal(err)
	}
	if !decrypts(40000, 0) {
		t.Fatal("seq 40000 does not decrypt with rollover count 0")
	}
	v.remote.Store(unusableRemote)
	dropped0 := testutilValue(r.metrics.directDropped)
	for seq := uint16(40001); seq != 10001; seq++ {
		if err := send(seq); err != errNoRemote {
			t.Fatalf("seq %d: %v, want errNoRemote", seq, err)
		}
	}
	if d := testutilValue(r.metrics.directDropped) - dropped0; d != 35536 {
		t.Errorf("%v packets counted as dropped, want 35536", d)
	}
	v.remote.Store(writable)
	if err := send(10001); err != nil {
		t.Fatal(err)
	}
	if !decrypts(10001, 1) {
		t.Error("seq 10001 after the wrap was not encrypted with rollover count 1 (its index was used before the wrap)")
	}
}
