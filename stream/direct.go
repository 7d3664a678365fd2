package stream

import (
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"unsafe"

	"github.com/pion/dtls/v2"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v2"
	"github.com/pion/webrtc/v3"
)

// A viewer's RTP can skip pion's write chain. Through pion, every packet of every
// viewer goes through the track's interceptor adapter (an attributes map per packet),
// the SRTP session (its started channel and context lock, the ciphertext into a pooled
// buffer), the DTLS mux endpoint, the ICE conn (agent check, selected pair, last-sent
// time) and the UDP mux conn, and the batcher then copies the ciphertext once more:
// ~30 % of the relay's CPU at 200 viewers besides the encryption itself, and four
// allocations per packet. The relay already does everything that chain adds for a
// viewer (NACKs, sender reports; the viewers' API has no interceptor), so the writer
// encrypts with the viewer's own SRTP context, keyed from its DTLS connection as pion
// keys its own, into the batcher's buffer, and queues it to the selected candidate
// pair's remote address on the relay's one UDP socket, where pion would send it too.
//
// pion v3 does not export a DTLSTransport's DTLS connection (the keying material
// exporter); directConn reads the unexported field by name and type, and when that
// fails (another pion version), or the pair is not one the relay can write to when
// the viewer's first packet goes out, the viewer keeps pion's write chain.

// directOut is one viewer's own SRTP output.
type directOut struct {
	mu  sync.Mutex // the rollover state: the writer and NACK resends
	ctx *srtp.Context
	gcm *gcmSealer // the AES-GCM profiles (srtpgcm.go); nil: ctx encrypts
	hdr rtp.Header // EncryptRTP's parse of the header (under mu)
	out *batchConn
}

// newDirectOut keys a viewer's output with the local master key and salt.
func newDirectOut(key, salt []byte, prof srtp.ProtectionProfile, out *batchConn) (*directOut, error) {
	ctx, err := srtp.CreateContext(key, salt, prof)
	if err != nil {
		return nil, err
	}
	d := &directOut{ctx: ctx, out: out}
	if prof == srtp.ProtectionProfileAeadAes128Gcm || prof == srtp.ProtectionProfileAeadAes256Gcm {
		if d.gcm, err = newGCMSealer(key, salt); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// remoteAddr is the selected pair's remote end (ua nil: one the relay cannot write to).
type remoteAddr struct {
	ua *net.UDPAddr
	ap netip.AddrPort
}

// dtlsConnField is DTLSTransport's unexported DTLS connection, nil if this pion has no
// such field.
var dtlsConnField = func() *reflect.StructField {
	f, ok := reflect.TypeOf(webrtc.DTLSTransport{}).FieldByName("conn")
	if !ok || f.Type != reflect.TypeOf((*dtls.Conn)(nil)) {
		return nil
	}
	return &f
}()

// directConn returns dt's DTLS connection (nil before the handshake or when pion's
// layout is not the expected one). Call it only once the connection is up: the field
// is written before pion reports the DTLS transport connected.
func directConn(dt *webrtc.DTLSTransport) *dtls.Conn {
	if dtlsConnField == nil || dt == nil {
		return nil
	}
	return *(**dtls.Conn)(unsafe.Add(unsafe.Pointer(dt), dtlsConnField.Offset))
}

// srtpProfile maps the negotiated DTLS-SRTP profile to srtp's.
func srtpProfile(p dtls.SRTPProtectionProfile) (srtp.ProtectionProfile, bool) {
	switch p {
	case dtls.SRTP_AEAD_AES_128_GCM:
		return srtp.ProtectionProfileAeadAes128Gcm, true
	case dtls.SRTP_AEAD_AES_256_GCM:
		return srtp.ProtectionProfileAeadAes256Gcm, true
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		return srtp.ProtectionProfileAes128CmHmacSha1_80, true
	}
	return 0, false
}

// dtlsClient tells from the local description whether this end is the DTLS client
// (a=setup:active), as pion's DTLSTransport decides it.
func dtlsClient(sdp string) (client, ok bool) {
	for _, line := range strings.Split(sdp, "\n") {
		if v, found := strings.CutPrefix(strings.TrimSpace(line), "a=setup:"); found {
			switch v {
			case "active":
				return true, true
			case "passive":
				return false, true
			}
			return false, false
		}
	}
	return false, false
}

// setupDirect keys the viewer's own SRTP output; nil leaves it on pion's chain. The
// connection must be up (connected).
func (v *viewer) setupDirect() *directOut {
	out := v.room.relay.out
	if out == nil || v.transport == nil || v.pc.LocalDescription() == nil {
		return nil
	}
	conn := directConn(v.transport)
	if conn == nil {
		return nil
	}
	sp, ok := conn.SelectedSRTPProtectionProfile()
	if !ok {
		return nil
	}
	prof, ok := srtpProfile(sp)
	if !ok {
		return nil
	}
	client, ok := dtlsClient(v.pc.LocalDescription().SDP)
	if !ok {
		return nil
	}
	cfg := srtp.Config{Profile: prof}
	state := conn.ConnectionState()
	if err := cfg.ExtractSessionKeysFromDTLS(&state, client); err != nil {
		return nil
	}
	d, err := newDirectOut(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, prof, out)
	if err != nil {
		return nil
	}
	if v.remote.Load() == nil {
		pair, err := v.transport.ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil {
			return nil
		}
		v.adoptPair(pair)
	}
	if !v.remote.Load().usable() {
		return nil
	}
	return d
}

// setRemote follows the selected candidate pair: pion's pair change handler, which
// its ICE agent calls for each change, in order, from one goroutine.
func (v *viewer) setRemote(pair *webrtc.ICECandidatePair) {
	v.remote.Store(pairRemote(pair))
}

// adoptPair takes pair, read from the ICE transport, as the remote end unless the pair
// change handler has set one meanwhile. The handler may deliver a change between that
// read and this store: what it set is that change (or a later one), newer than pair,
// and stays.
func (v *viewer) adoptPair(pair *webrtc.ICECandidatePair) {
	v.remote.CompareAndSwap(nil, pairRemote(pair))
}

// unusableRemote is the remote end of a selected pair the relay cannot write to.
var unusableRemote = &remoteAddr{}

// usable tells whether a is a remote end the relay can write to (nil: none known yet).
func (a *remoteAddr) usable() bool { return a != nil && a.ua != nil }

// pairRemote is pair's remote end when the relay can write to it from its UDP socket
// (a UDP pair whose remote is an IP address), else unusableRemote.
func pairRemote(pair *webrtc.ICECandidatePair) *remoteAddr {
	if pair == nil || pair.Local == nil || pair.Remote == nil ||
		pair.Local.Protocol != webrtc.ICEProtocolUDP || pair.Remote.Protocol != webrtc.ICEProtocolUDP {
		return unusableRemote
	}
	ip, err := netip.ParseAddr(pair.Remote.Address)
	if err != nil {
		return unusableRemote
	}
	ua := &net.UDPAddr{IP: ip.AsSlice(), Port: int(pair.Remote.Port), Zone: ip.Zone()}
	return &remoteAddr{ua: ua, ap: netip.AddrPortFrom(ip.Unmap(), pair.Remote.Port)}
}

// direct returns the viewer's own output, keying it on first use; nil: pion's chain.
func (v *viewer) direct() *directOut {
	v.directOnce.Do(func() {
		if v.connected.Load() {
			v.dout = v.setupDirect()
		}
		if v.dout != nil {
			v.room.relay.metrics.direct.Inc()
		}
	})
	return v.dout
}

// errNoRemote: a viewer on the relay's own SRTP output whose selected pair is not one
// the relay can write to (its packets are dropped until the pair changes again).
var errNoRemote = errors.New("stream: the selected candidate pair is not on the relay's UDP socket")

// writeRTP sends one packet of track b: the viewer's own SRTP output when it has one,
// else pion's write chain. Which one is decided at the viewer's first packet, for
// good. A viewer on its own output never goes to pion's chain: pion's SRTP context for
// the SSRC has the same keys but its own rollover count, which starts at 0, so once
// the output has wrapped its sequence numbers (it starts at the publisher's, anywhere
// in 0-65535), pion would encrypt packet indices the relay has used already (the same
// keystream, or GCM nonce, for two payloads). While its pair is not one the relay can
// write to, its packets are dropped and counted, encrypted all the same: srtp infers
// the rollover count from the last packet it encrypted (within 2^15), so a context
// that missed the numbers the output moved on by meanwhile would, once they were
// 2^15 or more, encrypt the next packets with a rollover count the output has used.
//
// sb, when not nil, is the calling writer's own batch (writers.go): the packet goes
// out with the writer's next sendmmsg instead of through the batcher's flusher.
func (v *viewer) writeRTP(b *binding, h *rtp.Header, payload []byte, sb *sendBatch) error {
	d := v.direct()
	if d == nil {
		_, err := b.ws.WriteRTP(h, payload)
		return err
	}
	ra := v.remote.Load()
	if !ra.usable() {
		v.room.relay.metrics.directDropped.Inc()
		if bp, err := d.seal(h, payload); err == nil {
			d.out.recycle(bp)
		}
		return errNoRemote
	}
	return d.write(ra, h, payload, sb)
}

// write encrypts header and payload into a batcher buffer and queues it for ra: on
// sb, else on the batcher.
func (d *directOut) write(ra *remoteAddr, h *rtp.Header, payload []byte, sb *sendBatch) error {
	bp, err := d.seal(h, payload)
	if err != nil {
		return err
	}
	if sb != nil {
		return sb.add(bp, ra.ua, ra.ap)
	}
	return d.out.enqueue(bp, ra.ua, ra.ap)
}

// seal encrypts header and payload into a batcher buffer (for enqueue or recycle).
func (d *directOut) seal(h *rtp.Header, payload []byte) (*[]byte, error) {
	bp := d.out.buffer()
	n := h.MarshalSize()
	size := n + len(payload)
	buf := *bp
	if cap(buf) < size+srtpTrailer {
		buf = make([]byte, 0, size+srtpTrailer)
	}
	buf = buf[:size]
	if _, err := h.MarshalTo(buf); err != nil {
		d.out.recycle(bp)
		return nil, err
	}
	if d.gcm != nil {
		d.mu.Lock()
		enc, err := d.gcm.seal(buf[:n], h, payload)
		d.mu.Unlock()
		if err != nil {
			d.out.recycle(bp)
			return nil, err
		}
		*bp = enc
		return bp, nil
	}
	copy(buf[n:], payload)
	d.mu.Lock()
	// In place: the header is rewritten as it is, the payload encrypted over itself
	// (AEAD Seal and CTR allow exactly overlapping input and output).
	enc, err := d.ctx.EncryptRTP(buf[:0], buf, &d.hdr)
	d.mu.Unlock()
	if err != nil {
		d.out.recycle(bp)
		return nil, err
	}
	*bp = enc
	return bp, nil
}

// srtpTrailer is room for the SRTP auth tag (16 bytes for GCM, 10 for SHA1-80).
const srtpTrailer = 16
