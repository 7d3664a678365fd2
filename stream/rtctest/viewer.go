package rtctest

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v3"
)

// KindStats counts the packets of one kind a viewer received.
type KindStats struct {
	Packets int
	// Expected is the span of sequence numbers seen (unwrapped): Packets short of it
	// were lost.
	Expected int
	// Discontinuities counts packets whose sequence number is not the previous + 1.
	Discontinuities int
	Keyframes       int
	// LastTimestamp is the RTP timestamp of the newest packet.
	LastTimestamp uint32
	// TimestampJumpsBack counts packets whose timestamp went back by more than 1 s.
	TimestampJumpsBack int
}

// ViewerStats is a snapshot of a viewer's counters.
type ViewerStats struct {
	Audio, Video    KindStats
	ConnectedAt     time.Time
	FirstKeyframeAt time.Time
	// FirstVideoKeyframe: the first video packet started a keyframe (decodable at once).
	FirstVideoKeyframe bool
	// LatencyMicros holds publisher-send → viewer-receive times of stamped packets
	// (the receive: pion's track read returned the packet).
	LatencyMicros []int32
	// SockLatencyMicros holds publisher-send → arrival at the viewer's socket (the
	// kernel's receive time) of the stamped packets whose arrival the socket kept
	// (ViewerOptions.SocketTimes; none without).
	SockLatencyMicros []int32
}

type kindState struct {
	KindStats
	started  bool
	firstExt int64
	lastExt  int64
	maxExt   int64
}

// Viewer is a WHEP-style receive-only peer that records what arrives.
type Viewer struct {
	PC    *webrtc.PeerConnection
	up    chan struct{}
	keep  bool         // keep latency samples
	times *SocketTimes // the sockets' arrival times (nil: none)

	mu          sync.Mutex
	audio       kindState                      // guarded by mu
	video       kindState                      // guarded by mu
	connectedAt time.Time                      // guarded by mu
	firstKeyAt  time.Time                      // guarded by mu
	firstVideoK bool                           // guarded by mu
	latencies   []int32                        // guarded by mu
	sockLat     []int32                        // guarded by mu
	onPacket    func(kind webrtc.RTPCodecType) // optional hook, called outside mu
	recording   bool                           // guarded by mu
	record      []Arrival                      // guarded by mu
	closed      atomic.Bool
}

// ViewerOptions configure NewViewerWithOptions.
type ViewerOptions struct {
	// KeepLatency records every stamped packet's latency (ViewerStats).
	KeepLatency bool
	// SocketTimes, the one the API was made with (APIOptions.SocketTimes), adds each
	// stamped packet's arrival at the viewer's socket.
	SocketTimes *SocketTimes
}

// NewViewer creates a receive-only peer for audio and video. keepLatency records every
// stamped packet's latency.
func NewViewer(api *webrtc.API, keepLatency bool) (*Viewer, error) {
	return NewViewerWithOptions(api, ViewerOptions{KeepLatency: keepLatency})
}

// NewViewerWithOptions creates a receive-only peer for audio and video configured by o.
func NewViewerWithOptions(api *webrtc.API, o ViewerOptions) (*Viewer, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	v := &Viewer{PC: pc, up: make(chan struct{}), keep: o.KeepLatency, times: o.SocketTimes}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			_ = pc.Close()
			return nil, err
		}
	}
	var once atomic.Bool
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected && !once.Swap(true) {
			v.mu.Lock()
			v.connectedAt = time.Now()
			v.mu.Unlock()
			close(v.up)
		}
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) { v.read(t, v.socketOf(r)) })
	return v, nil
}

// Connect signals and waits for the connection.
func (v *Viewer) Connect(ctx context.Context, signal Signal) error {
	if err := Connect(ctx, v.PC, signal); err != nil {
		return err
	}
	return waitConnected(ctx, v.PC, v.up)
}

// Close closes the peer connection.
func (v *Viewer) Close() error {
	v.closed.Store(true)
	return v.PC.Close()
}

// socketOf returns the arrival times of the socket the receiver's media comes through:
// the local side of its ICE pair (connected by the time a track arrives); nil if none
// are kept.
func (v *Viewer) socketOf(r *webrtc.RTPReceiver) *arrivalRing {
	if v.times == nil {
		return nil
	}
	pair, err := r.Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local == nil {
		return nil
	}
	ip, err := netip.ParseAddr(pair.Local.Address)
	if err != nil {
		return nil
	}
	return v.times.socket(netip.AddrPortFrom(ip, pair.Local.Port))
}

// read counts every packet of the track. It reads into one buffer and parses only the
// header (no packet allocated per read): a load generator runs hundreds of these. sock,
// if not nil, has the packets' arrival times at the socket.
func (v *Viewer) read(t *webrtc.TrackRemote, sock *arrivalRing) {
	kind := t.Kind()
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		payload, ok := rtpPayload(&h, buf[:n])
		if !ok {
			continue
		}
		var sockAt int64 // Unix ns, 0: unknown
		if sock != nil {
			sockAt, _ = sock.lookup(h.SSRC, h.SequenceNumber)
		}
		v.mu.Lock()
		ks := &v.audio
		if kind == webrtc.RTPCodecTypeVideo {
			ks = &v.video
		}
		ks.add(h.SequenceNumber, h.Timestamp)
		if kind == webrtc.RTPCodecTypeVideo {
			key := IsVP8Keyframe(payload)
			if ks.Packets == 1 {
				v.firstVideoK = key
			}
			if key {
				ks.Keyframes++
				if v.firstKeyAt.IsZero() {
					v.firstKeyAt = now
				}
			}
		}
		if sent, seq, ok := ReadStamp(payload); ok {
			if v.keep {
				v.latencies = append(v.latencies, int32(now.Sub(sent).Microseconds()))
				if sockAt != 0 {
					v.sockLat = append(v.sockLat, int32((sockAt-sent.UnixNano())/1e3))
				}
			}
			if v.recording {
				v.record = append(v.record, Arrival{Stamp: seq, Video: kind == webrtc.RTPCodecTypeVideo, Seq: ks.lastExt,
					At: now.UnixNano(), SockAt: sockAt, Latency: now.Sub(sent)})
			}
		}
		hook := v.onPacket
		v.mu.Unlock()
		if hook != nil {
			hook(kind)
		}
	}
}

// rtpPayload parses the header of an RTP packet into h and returns its payload
// (padding removed); false if the packet is malformed.
func rtpPayload(h *rtp.Header, b []byte) ([]byte, bool) {
	hn, err := h.Unmarshal(b)
	if err != nil || hn > len(b) {
		return nil, false
	}
	end := len(b)
	if h.Padding {
		if end == hn || int(b[end-1]) > end-hn {
			return nil, false
		}
		end -= int(b[end-1])
	}
	return b[hn:end], true
}

func (k *kindState) add(seq uint16, ts uint32) {
	if !k.started {
		k.started = true
		k.firstExt, k.lastExt, k.maxExt = int64(seq), int64(seq), int64(seq)
		k.Packets, k.Expected, k.LastTimestamp = 1, 1, ts
		return
	}
	ext := k.lastExt + int64(int16(seq-uint16(k.lastExt)))
	if ext != k.lastExt+1 {
		k.Discontinuities++
	}
	if d := int32(ts - k.LastTimestamp); d < -90000 {
		k.TimestampJumpsBack++
	}
	k.LastTimestamp = ts
	k.lastExt = ext
	k.Packets++
	if ext > k.maxExt {
		k.maxExt = ext
	}
	k.Expected = int(k.maxExt - k.firstExt + 1)
}

// Stats returns a snapshot; latency samples are handed over and cleared.
func (v *Viewer) Stats() ViewerStats {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := ViewerStats{Audio: v.audio.KindStats, Video: v.video.KindStats,
		ConnectedAt: v.connectedAt, FirstKeyframeAt: v.firstKeyAt, LatencyMicros: v.latencies,
		SockLatencyMicros: v.sockLat, FirstVideoKeyframe: v.firstVideoK}
	v.latencies, v.sockLat = nil, nil
	return s
}

// Arrival is one stamped packet a recording viewer received.
type Arrival struct {
	Stamp uint32 // the publisher's stamp sequence (PutStamp), shared by audio and video
	Video bool
	Seq   int64 // the viewer's RTP sequence number, unwrapped
	At    int64 // arrival (pion's track read returned it), Unix nanoseconds
	// SockAt is its arrival at the viewer's socket (the kernel's receive time), Unix
	// nanoseconds; 0 if unknown (no ViewerOptions.SocketTimes, or no longer kept).
	SockAt int64
	// Latency is publisher send → arrival (a retransmission's includes its NACK's
	// round trip).
	Latency time.Duration
}

// Record starts recording every stamped packet's arrival (a load generator matches
// them with what the publisher sent).
func (v *Viewer) Record() {
	v.mu.Lock()
	v.recording, v.record = true, nil
	v.mu.Unlock()
}

// Recorded stops recording and returns the arrivals since Record.
func (v *Viewer) Recorded() []Arrival {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.record
	v.recording, v.record = false, nil
	return r
}

// OnPacket sets a hook called for every packet received.
func (v *Viewer) OnPacket(f func(kind webrtc.RTPCodecType)) {
	v.mu.Lock()
	v.onPacket = f
	v.mu.Unlock()
}
