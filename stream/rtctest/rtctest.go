// Package rtctest holds real pion peers for tests and the load generator: a publisher
// that sends synthetic VP8 and Opus (valid VP8 payload descriptors and frame tags,
// keyframes on request, random bytes inside) and viewers that count what they get.
// Every packet's last 16 bytes carry the send time and a sequence number, so a relay
// that keeps payloads intact can be measured end to end.
package rtctest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pion/dtls/v2"
	"github.com/pion/ice/v2"
	"github.com/pion/interceptor"
	"github.com/pion/transport/v2"
	"github.com/pion/webrtc/v3"
)

// StampLen is the size of the trailer every generated payload ends with.
const StampLen = 16

const stampMagic = 0x4c435254 // "LCRT"

// NewAPI returns a client WebRTC API with pion's default codecs and interceptors
// (NACK, reports, TWCC), restricted to loopback UDP.
func NewAPI() (*webrtc.API, error) { return NewAPIWithSRTP() }

// NewAPIWithSRTP is NewAPI offering only the SRTP protection profiles given (none:
// pion's default list).
func NewAPIWithSRTP(srtp ...dtls.SRTPProtectionProfile) (*webrtc.API, error) {
	return NewAPIWithOptions(APIOptions{SRTP: srtp})
}

// APIOptions configure NewAPIWithOptions.
type APIOptions struct {
	// SRTP lists the SRTP protection profiles offered (nil: pion's default list).
	SRTP []dtls.SRTPProtectionProfile
	// GRO turns UDP generic receive offload on for the peers' sockets (Linux only): a
	// GSO train from the relay is read with one recvmsg and its packets are handed to
	// pion one by one, which saves a load generator's viewers a system call and a
	// wake-up per packet. Everything above the socket is unchanged.
	GRO bool
	// SocketTimes, when set, keeps the kernel receive time of the RTP packets arriving
	// at the peers' sockets (SO_TIMESTAMPNS, Linux only), for viewers made with the same
	// SocketTimes (ViewerOptions): they then also measure publisher send → arrival at
	// their socket, without their own decryption and scheduling. Not with Net.
	SocketTimes *SocketTimes
	// Net, when set, is the network the peers' sockets come from (tests: one that
	// loses packets). Not with GRO or SocketTimes.
	Net transport.Net
}

// NewAPIWithOptions is NewAPI configured by o.
func NewAPIWithOptions(o APIOptions) (*webrtc.API, error) {
	srtp := o.SRTP
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, reg); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if len(srtp) > 0 {
		se.SetSRTPProtectionProfiles(srtp...)
	}
	if o.Net != nil {
		if o.GRO || o.SocketTimes != nil {
			return nil, errors.New("rtctest: Net set with GRO or SocketTimes")
		}
		se.SetNet(o.Net)
	}
	if o.GRO || o.SocketTimes != nil {
		n, err := newRecvNet(o.GRO, o.SocketTimes)
		if err != nil {
			return nil, err
		}
		se.SetNet(n)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg),
		webrtc.WithSettingEngine(se)), nil
}

// Signal sends an offer to the server and returns its answer.
type Signal func(ctx context.Context, offer string) (answer string, err error)

// NewPeer returns a new publisher's peer (NewPublisher's: audio and video to send) or a
// viewer's (NewViewer's), for a test that needs only its offer (Offer).
func NewPeer(api *webrtc.API, publisher bool) (*webrtc.PeerConnection, error) {
	if publisher {
		p, err := NewPublisher(api, PublisherOptions{})
		if err != nil {
			return nil, err
		}
		return p.PC, nil
	}
	v, err := NewViewer(api, false)
	if err != nil {
		return nil, err
	}
	return v.PC, nil
}

// Offer makes pc's offer, sets it as pc's local description and returns it once every
// candidate is gathered (a complete offer: no trickle needed).
func Offer(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return pc.LocalDescription().SDP, nil
}

// Connect runs offer/answer on pc with all candidates gathered first (no trickle): the
// offer goes to signal, its answer becomes pc's remote description.
func Connect(ctx context.Context, pc *webrtc.PeerConnection, signal Signal) error {
	offer, err := Offer(ctx, pc)
	if err != nil {
		return err
	}
	answer, err := signal(ctx, offer)
	if err != nil {
		return err
	}
	return pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
}

// waitConnected waits until pc is connected.
func waitConnected(ctx context.Context, pc *webrtc.PeerConnection, up <-chan struct{}) error {
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("peer not connected (state %s): %w", pc.ConnectionState(), ctx.Err())
	}
}

// PutStamp writes the trailer (send time, sequence) into the last StampLen bytes.
func PutStamp(payload []byte, sent time.Time, seq uint32) {
	t := payload[len(payload)-StampLen:]
	binary.BigEndian.PutUint64(t[0:], uint64(sent.UnixNano()))
	binary.BigEndian.PutUint32(t[8:], seq)
	binary.BigEndian.PutUint32(t[12:], stampMagic)
}

// ReadStamp reads the trailer; false if the payload carries none.
func ReadStamp(payload []byte) (sent time.Time, seq uint32, ok bool) {
	if len(payload) < StampLen {
		return time.Time{}, 0, false
	}
	t := payload[len(payload)-StampLen:]
	if binary.BigEndian.Uint32(t[12:]) != stampMagic {
		return time.Time{}, 0, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(t[0:]))), binary.BigEndian.Uint32(t[8:]), true
}

// ErrNoTrack means the answer accepted no track of a kind the peer needs.
var ErrNoTrack = errors.New("rtctest: no track negotiated")

// IsVP8Keyframe tells whether a VP8 RTP payload starts a keyframe.
func IsVP8Keyframe(p []byte) bool {
	if len(p) < 1 || p[0]&0x10 == 0 || p[0]&0x07 != 0 {
		return false
	}
	i := 1
	if p[0]&0x80 != 0 {
		if len(p) <= i {
			return false
		}
		x := p[i]
		i++
		if x&0x80 != 0 {
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if x&0x40 != 0 {
			i++
		}
		if x&0x30 != 0 {
			i++
		}
	}
	return len(p) > i && p[i]&0x01 == 0
}

// GROStats returns how many recvmsg calls the GRO sockets of NewAPIWithOptions made and
// how many packets they returned (more packets than reads: trains were read whole).
func GROStats() (reads, packets int64) {
	return groStats.reads.Load(), groStats.packets.Load()
}
