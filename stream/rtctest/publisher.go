package rtctest

import (
	"context"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v3"
)

// PublisherOptions shape the synthetic stream.
type PublisherOptions struct {
	Bitrate     int           // video bits per second (default 2,000,000)
	FPS         int           // default 30
	Width       int           // default 1280
	Height      int           // default 720
	KeyInterval time.Duration // periodic keyframes (default 2 s; <0 only on request)
	MTU         int           // RTP payload bytes per packet (default 1100)
	// Pacing spreads video packets at Pacing × Bitrate, released every 5 ms, as
	// libwebrtc's pacer does (factor 2.5); 0 sends each frame as one burst. SetPacing
	// changes it while running.
	Pacing float64
}

// pacerInterval is how often the pacer releases packets (libwebrtc's process interval).
const pacerInterval = 5 * time.Millisecond

// Publisher sends a synthetic 720p VP8 stream plus Opus 20 ms packets.
type Publisher struct {
	opts     PublisherOptions
	PC       *webrtc.PeerConnection
	video    *webrtc.TrackLocalStaticRTP
	audio    *webrtc.TrackLocalStaticRTP
	up       chan struct{}
	forceKey atomic.Bool
	pacing   atomic.Uint64 // math.Float64bits of the pacing factor
	seq      uint32        // stamp sequence, owned by Run
	pending  []*rtp.Packet // video packets the pacer holds, owned by Run
	budget   int           // bytes the pacer may still send this interval, owned by Run
	// budgetFactor is the pacing factor budget was counted for, owned by Run.
	budgetFactor float64

	// KeyframeRequests counts PLI/FIR received.
	KeyframeRequests atomic.Int64
	// PacketsSent counts RTP packets written, each counted as it is stamped, before
	// its write: a packet stamped n is written only after PacketsSent reads n. A
	// window opened by Record and then PacketsSent.Load (stamps from the load + 1 on)
	// thus misses none; counted after the write, a packet written just before Record
	// could reach the viewer unrecorded and still be the window's first stamp.
	PacketsSent atomic.Int64
}

// NewPublisher creates the publisher's peer connection and tracks.
func NewPublisher(api *webrtc.API, opts PublisherOptions) (*Publisher, error) {
	if opts.Bitrate <= 0 {
		opts.Bitrate = 2_000_000
	}
	if opts.FPS <= 0 {
		opts.FPS = 30
	}
	if opts.Width <= 0 {
		opts.Width, opts.Height = 1280, 720
	}
	if opts.KeyInterval == 0 {
		opts.KeyInterval = 2 * time.Second
	}
	if opts.MTU <= 0 {
		opts.MTU = 1100
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p := &Publisher{opts: opts, PC: pc, up: make(chan struct{})}
	p.SetPacing(opts.Pacing)
	p.video, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pub")
	p.audio, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	for _, t := range []*webrtc.TrackLocalStaticRTP{p.video, p.audio} {
		tr, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			_ = pc.Close()
			return nil, err
		}
		go p.readRTCP(tr.Sender())
	}
	var once atomic.Bool
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected && !once.Swap(true) {
			close(p.up)
		}
	})
	return p, nil
}

// Connect signals and waits for the connection.
func (p *Publisher) Connect(ctx context.Context, signal Signal) error {
	if err := Connect(ctx, p.PC, signal); err != nil {
		return err
	}
	return waitConnected(ctx, p.PC, p.up)
}

// Close closes the peer connection.
func (p *Publisher) Close() error { return p.PC.Close() }

func (p *Publisher) readRTCP(s *webrtc.RTPSender) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		for _, pk := range pkts {
			switch pk.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				p.KeyframeRequests.Add(1)
				p.forceKey.Store(true)
			}
		}
	}
}

// SetPacing sets the pacing factor (0: each video frame goes as one burst).
func (p *Publisher) SetPacing(factor float64) { p.pacing.Store(math.Float64bits(max(factor, 0))) }

// Pacing returns the pacing factor.
func (p *Publisher) Pacing() float64 { return math.Float64frombits(p.pacing.Load()) }

// Run sends media until ctx is done. Video frames go out every 1/FPS (a keyframe
// first, then on request or every KeyInterval), audio every 20 ms. RTP timestamps
// follow the wall clock (mediaClock), not the count of frames sent.
func (p *Publisher) Run(ctx context.Context) {
	frameEvery := time.Second / time.Duration(p.opts.FPS)
	vt := time.NewTicker(frameEvery)
	at := time.NewTicker(20 * time.Millisecond)
	pt := time.NewTicker(pacerInterval)
	defer vt.Stop()
	defer at.Stop()
	defer pt.Stop()
	var vts0, ats0 uint32 = rand.Uint32(), rand.Uint32()
	start := time.Now()
	vclock := mediaClock{start: start, every: frameEvery, n: -1}
	aclock := mediaClock{start: start, every: 20 * time.Millisecond, n: -1}
	vseq, aseq := uint16(rand.Uint32()), uint16(rand.Uint32())
	picID := uint16(rand.Uint32()) & 0x7fff
	lastKey := time.Time{}
	avgFrame := p.opts.Bitrate / 8 / p.opts.FPS
	for {
		select {
		case <-ctx.Done():
			return
		case <-vt.C:
			key := p.forceKey.Swap(false) || lastKey.IsZero() ||
				(p.opts.KeyInterval > 0 && time.Since(lastKey) >= p.opts.KeyInterval)
			size := avgFrame * 9 / 10
			if key {
				size = avgFrame * 4
				lastKey = time.Now()
			}
			vts := vts0 + uint32(vclock.next(time.Now()))*uint32(90000/p.opts.FPS)
			vseq = p.queueFrame(key, size, vts, vseq, picID)
			picID = (picID + 1) & 0x7fff
			p.sendPaced(false)
		case <-pt.C:
			p.sendPaced(true)
		case <-at.C:
			payload := make([]byte, 100)
			fill(payload)
			payload[0] = 0xfc // Opus TOC: CELT FB 20 ms, one frame
			p.seq++
			p.PacketsSent.Add(1) // before the write: see PacketsSent
			now := time.Now()
			PutStamp(payload, now, p.seq)
			ats := ats0 + uint32(aclock.next(now))*960
			_ = p.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: false,
				SequenceNumber: aseq, Timestamp: ats}, Payload: payload})
			aseq++
		}
	}
}

// mediaClock numbers a track's frames by the wall clock since start, as a capture
// clock does. A time.Ticker drops the ticks its reader is too busy to take: numbered
// by frames sent, a publisher starved of CPU (a loaded machine, -race) would stamp
// timestamps falling ever further behind real time, and a relay would take its
// packets for an ingest backlog (stream/lag.go) and drop them. A dropped tick is a
// gap in the timestamps instead, as a frame a capture pipeline drops.
type mediaClock struct {
	start time.Time
	every time.Duration
	n     int64 // the last frame's number (-1 before the first)
}

// next returns the number of the frame captured at now (one more than the last at
// least).
func (c *mediaClock) next(now time.Time) int64 {
	c.n = max(c.n+1, int64(now.Sub(c.start)/c.every))
	return c.n
}

// queueFrame packetizes one VP8 frame of size bytes (RFC 7741) for the pacer and
// returns the next sequence number.
func (p *Publisher) queueFrame(key bool, size int, ts uint32, seq uint16, picID uint16) uint16 {
	header := vp8FrameHeader(key, p.opts.Width, p.opts.Height)
	body := make([]byte, size)
	fill(body)
	copy(body, header)
	for off := 0; off < len(body); {
		n := min(p.opts.MTU-3-StampLen, len(body)-off)
		payload := make([]byte, 3+n+StampLen)
		payload[0] = 0x80 // X
		if off == 0 {
			payload[0] |= 0x10 // S, partition 0
		}
		payload[1] = 0x80               // I: a 7-bit picture id follows
		payload[2] = byte(picID & 0x7f) // M=0
		copy(payload[3:], body[off:off+n])
		off += n
		p.pending = append(p.pending, &rtp.Packet{Header: rtp.Header{Version: 2, Marker: off == len(body),
			SequenceNumber: seq, Timestamp: ts}, Payload: payload})
		seq++
	}
	return seq
}

// sendPaced sends the video packets the pacer allows now (all of them when unpaced),
// each stamped when sent. tick: an interval passed and its budget is added (as in
// libwebrtc's interval budget, what an interval leaves unused is not carried over).
func (p *Publisher) sendPaced(tick bool) {
	factor := p.Pacing()
	if factor != p.budgetFactor { // a pacing change starts a fresh budget
		p.budgetFactor, p.budget = factor, 0
	}
	if tick && factor > 0 {
		perTick := int(factor * float64(p.opts.Bitrate) / 8 * pacerInterval.Seconds())
		p.budget = min(p.budget+perTick, perTick) // an overspent interval is paid back
	}
	sent := 0
	for _, pk := range p.pending {
		if factor > 0 {
			if p.budget <= 0 {
				break
			}
			p.budget -= len(pk.Payload) + 12
		}
		p.seq++
		p.PacketsSent.Add(1) // before the write: see PacketsSent
		PutStamp(pk.Payload, time.Now(), p.seq)
		_ = p.video.WriteRTP(pk)
		sent++
	}
	clear(p.pending[:sent])
	p.pending = append(p.pending[:0], p.pending[sent:]...)
}

// vp8FrameHeader returns the start of a VP8 frame (RFC 6386 §9.1): a 3-byte frame
// tag (P bit clear on keyframes) and, on keyframes, the start code and dimensions.
func vp8FrameHeader(key bool, w, h int) []byte {
	if !key {
		return []byte{0x31, 0x00, 0x00}
	}
	return []byte{0x30, 0x00, 0x00, 0x9d, 0x01, 0x2a, byte(w), byte(w >> 8), byte(h), byte(h >> 8)}
}

func fill(b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := rand.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}
