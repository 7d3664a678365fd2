// Package stream is livecart's WebRTC media relay: one publisher per stream (WHIP
// ingest) fanned out to many viewers (WHEP playback). It knows pion and nothing of
// HTTP; the web package calls it through a small interface.
//
// Fan-out runs in parallel: the publisher's reader goroutine only hands each packet to
// every viewer's bounded queue, and a few writer goroutines (one per CPU, each serving
// its share of the viewers, writers.go) rewrite sequence numbers and timestamps,
// encrypt and write. A viewer whose queue is full drops video until the next keyframe
// instead of delaying anyone.
package stream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pion/dtls/v2"
	"github.com/pion/ice/v2"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/webrtc/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// Sentinel errors; the web layer maps them to HTTP statuses.
var (
	ErrPublisherExists = errors.New("stream already has a publisher")
	ErrBadOffer        = errors.New("malformed or unusable SDP offer")
	ErrBadFragment     = errors.New("malformed or unusable trickle ICE fragment")
	ErrNotFound        = errors.New("media session not found")
	ErrNotSupported    = errors.New("not supported (ICE restart)")
	ErrClosed          = errors.New("relay closed")
	ErrEnded           = errors.New("stream ended")
)

// Role tells which side of a stream a session is on.
type Role int

// Session roles.
const (
	RolePublisher Role = iota + 1
	RoleViewer
)

// Options configure a Relay.
type Options struct {
	// UDPPort is the single UDP port all WebRTC traffic uses (0 picks a free port).
	UDPPort int
	// ListenIP is the address the UDP port binds (default 0.0.0.0).
	ListenIP string
	// PublicIP is put in ICE host candidates instead of the local address (optional).
	PublicIP string
	Logger   *slog.Logger
	// ViewerGCMOnly offers WHEP viewers AES-128-GCM SRTP only, without the
	// AES-CM/HMAC-SHA1-80 fallback. Chromium and Safari (libwebrtc) choose SHA1-80
	// whenever it is offered, and it costs the relay about 5 times more per packet in
	// Go than AES-128-GCM; a viewer without AES-GCM cannot connect. Ignored in Baseline.
	ViewerGCMOnly bool
	// Baseline fans out the plain pion way (one shared TrackLocalStaticRTP per track,
	// written serially to every viewer) for comparison in benchmarks.
	Baseline bool
	// OnPublisher is called when a stream gains (live=true) or loses its publisher;
	// sessionID is the publisher's resource id. It is not called for streams ended
	// with EndStream.
	OnPublisher func(streamID, sessionID string, live bool)
	// Registerer receives the relay's metrics (optional).
	Registerer prometheus.Registerer
	// QueueLen is each viewer's packet queue length (default 256).
	QueueLen int
	// NACKBuffer is the number of a stream's newest packets kept per kind for
	// retransmission to its viewers, shared by all of them (a power of two up to
	// 16384; default 256).
	NACKBuffer uint16
	// DisconnectedTimeout and FailedTimeout are the ICE timeouts (default 5 s and 10 s):
	// a lost publisher is detected after their sum.
	DisconnectedTimeout time.Duration
	FailedTimeout       time.Duration
	// ViewerReportTimeout: a viewer that has sent receiver reports and whose reports
	// show none of the packets written to it over this long ago received (audio: three
	// times as long, as browsers report on audio less often) (its path
	// from the relay gone while its own packets still arrive, which ICE does not
	// notice) is closed ~2 s later (liveness.go; default 10 s, negative: never).
	// Ignored in Baseline.
	ViewerReportTimeout time.Duration
	// Upstream, when set, lets a stream with viewers here and its publisher on another
	// node be pulled from that node (cascade.go). Nil: media only where published.
	Upstream Upstream
	// OnUpstream is called when a stream starts (up=true) or stops being pulled.
	OnUpstream func(streamID string, up bool)
	// PullInterval is how often a pulling room asks Upstream for the origin (default
	// 200 ms); UpstreamGrace how long an upstream outlives the last local viewer
	// (default 2 s).
	PullInterval  time.Duration
	UpstreamGrace time.Duration
	// UpstreamTimeout bounds one signalling exchange with the origin (gathering, offer,
	// answer; default 5 s). An answer that comes back later is still awaited for as
	// long again, in the background, and the session it names is ended at once.
	UpstreamTimeout time.Duration
	// MaxRemoteCandidates bounds the distinct remote ICE candidates one session may be
	// given, in its offer and trickle PATCHes together (default
	// DefaultMaxRemoteCandidates): an offer over it is ErrBadOffer, a fragment that
	// would pass it ErrBadFragment (both ErrTooManyCandidates), and nothing of either
	// is taken.
	MaxRemoteCandidates int
	// SendGather, when positive, is how long the UDP send batcher lets a batch grow
	// once a packet is queued (Go's timers wake an idle process with ~1 ms granularity,
	// so the wait may be up to ~1 ms) or until 512 datagrams are queued: a paced
	// publisher's few packets, written to every viewer, then go out in a few sendmmsg
	// calls instead of one per writer's turn. Zero (the default) sends at once: the
	// gather cut the system calls 5-10× but did not measurably lower the relay's CPU
	// (docs/BENCHMARKS.md, 2026-12-02), so it is off until shown to help. Without it
	// the viewers' writers send their own datagrams, each one sendmmsg per pass over
	// its viewers (writers.go); with it they queue them on the batcher.
	SendGather time.Duration
}

// Relay owns the WebRTC API, the UDP port and every stream's room.
type Relay struct {
	opts    Options
	log     *slog.Logger
	api     *webrtc.API // publishers and upstreams (and viewers in Baseline)
	viewAPI *webrtc.API // viewers: no interceptors (the relay answers NACKs, sends reports)
	udp     net.PacketConn
	out     *batchConn // the batched UDP socket (nil in Baseline)
	mux     ice.UDPMux
	metrics *metrics
	// writers write the viewers' packets (nil in Baseline).
	writers *writerPool

	// pullers counts the rooms' puller goroutines (Close waits for them).
	pullers sync.WaitGroup
	// The viewers' sender reports (nack.go); nil channels in Baseline.
	stopReports chan struct{}
	reportsDone chan struct{}
	stopOnce    sync.Once

	mu     sync.Mutex
	rooms  map[string]*room // guarded by mu
	closed bool             // guarded by mu
}

// New builds the WebRTC API once and opens the UDP port.
func New(opts Options) (*Relay, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = 256
	}
	if opts.NACKBuffer == 0 {
		opts.NACKBuffer = 256
	}
	if n := opts.NACKBuffer; n&(n-1) != 0 || n > maxSegmentSpan {
		return nil, fmt.Errorf("stream: NACK buffer %d is not a power of two up to %d", n, maxSegmentSpan)
	}
	if opts.DisconnectedTimeout <= 0 {
		opts.DisconnectedTimeout = 5 * time.Second
	}
	if opts.FailedTimeout <= 0 {
		opts.FailedTimeout = 10 * time.Second
	}
	if opts.ViewerReportTimeout == 0 {
		opts.ViewerReportTimeout = defaultViewerReportTimeout
	}
	if opts.MaxRemoteCandidates <= 0 {
		opts.MaxRemoteCandidates = DefaultMaxRemoteCandidates
	}
	if opts.PullInterval <= 0 {
		opts.PullInterval = defaultPullInterval
	}
	if opts.UpstreamGrace <= 0 {
		opts.UpstreamGrace = defaultUpstreamGrace
	}
	if opts.UpstreamTimeout <= 0 {
		opts.UpstreamTimeout = defaultUpstreamTimeout
	}
	listen := opts.ListenIP
	if listen == "" {
		listen = "0.0.0.0"
	}
	ip := net.ParseIP(listen)
	if ip == nil {
		return nil, fmt.Errorf("stream: listen ip %q is not an IP address", listen)
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: opts.UDPPort})
	if err != nil {
		return nil, fmt.Errorf("stream: listen udp: %w", err)
	}
	r := &Relay{opts: opts, log: opts.Logger, udp: udp, rooms: map[string]*room{}}
	r.metrics = newMetrics(opts.Registerer)
	var sock net.PacketConn = udp
	if !opts.Baseline {
		// Baseline keeps pion's plain per-packet sendto, for a fair comparison.
		r.out = newBatchConn(udp, gsoSupported(udp), r.metrics.sendStats(), max(opts.SendGather, 0))
		sock = r.out
	}
	r.mux = webrtc.NewICEUDPMux(nil, sock)
	r.api, err = r.buildAPI(srtpProfiles, false)
	r.viewAPI = r.api
	if err == nil && !opts.Baseline {
		viewSRTP := srtpProfiles
		if opts.ViewerGCMOnly {
			viewSRTP = gcmProfiles
		}
		r.viewAPI, err = r.buildAPI(viewSRTP, true)
	}
	if err != nil {
		_ = r.mux.Close()
		r.metrics.unregister()
		return nil, err
	}
	if !opts.Baseline {
		// The viewers' writers send their own batches, unless the batcher is to gather
		// them (SendGather).
		own := r.out
		if opts.SendGather > 0 {
			own = nil
		}
		r.writers = newWriterPool(r.metrics, own)
		r.stopReports, r.reportsDone = make(chan struct{}), make(chan struct{})
		go r.reportLoop()
	}
	return r, nil
}

// UDPAddr is the address of the media port.
func (r *Relay) UDPAddr() net.Addr { return r.udp.LocalAddr() }

// buildAPI builds a WebRTC API on the relay's UDP mux; srtp is the SRTP profile list
// offered (parallel mode only: Baseline keeps pion's, AES-256-GCM first). viewers: the
// API is for the parallel relay's viewers, which get no interceptor at all. pion runs
// an interceptor's RTCP loop per PeerConnection even when it has nothing to do: the
// publishers' NACK generator would tick every 100 ms and the receiver reports every
// second on every viewer's connection (2,200 timer wake-ups a second at 200 viewers),
// and the reports' RTCP reader would parse every RTCP packet a viewer sends a second
// time. A viewer receives no media, so neither has anything to do there.
func (r *Relay) buildAPI(srtp []dtls.SRTPProtectionProfile, viewers bool) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := registerCodecs(me); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if r.opts.Baseline {
		// Plain pion defaults: 1024-packet NACK copy per outgoing track, reports, TWCC.
		if err := webrtc.RegisterDefaultInterceptors(me, reg); err != nil {
			return nil, err
		}
	} else if !viewers {
		if err := configureInterceptors(me, reg); err != nil {
			return nil, err
		}
	}
	se := webrtc.SettingEngine{}
	if !r.opts.Baseline {
		se.SetSRTPProtectionProfiles(srtp...)
	}
	se.SetICEUDPMux(r.mux)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetICETimeouts(r.opts.DisconnectedTimeout, r.opts.FailedTimeout, 2*time.Second)
	se.SetIncludeLoopbackCandidate(true)
	// The relay controls ICE only on its upstreams (cascade.go), which are offerers:
	// the origin's checks reach them before its answer does, so the pair they nominate
	// is often peer-reflexive, which pion would nominate only after a second.
	se.SetPrflxAcceptanceMinWait(0)
	if r.opts.PublicIP != "" && r.opts.PublicIP != r.opts.ListenIP {
		if net.ParseIP(r.opts.PublicIP) == nil {
			return nil, fmt.Errorf("stream: public ip %q is not an IP address", r.opts.PublicIP)
		}
		se.SetNAT1To1IPs([]string{r.opts.PublicIP}, webrtc.ICECandidateTypeHost)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg),
		webrtc.WithSettingEngine(se)), nil
}

// srtpProfiles are the SRTP protection profiles the relay offers, most wanted first.
// AES-128-GCM costs the least per packet in Go (AES-NI and carry-less multiply, 10
// rounds where AES-256 needs 14, no HMAC-SHA1); AES128_CM_HMAC_SHA1_80 is the fallback
// every WebRTC peer has. AES-256-GCM is left out on purpose: when the relay is the DTLS
// client (it answers), the peer chooses by its own order and libwebrtc would take 256
// before 128. libwebrtc (Chromium, Safari) puts SHA1-80 before both GCMs, so browsers
// end up on SHA1-80 unless Options.ViewerGCMOnly leaves it out for viewers.
var srtpProfiles = []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80}

// gcmProfiles are offered to viewers with Options.ViewerGCMOnly: AES-128-GCM alone, as
// libwebrtc would take AES-256-GCM first if it were offered too.
var gcmProfiles = []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM}

// configureInterceptors sets pion's NACK generator and receiver reports toward
// publishers. Nothing sits on the viewers' write path: the relay's writers answer
// NACKs from the stream's shared history and send the sender reports (nack.go).
func configureInterceptors(me *webrtc.MediaEngine, reg *interceptor.Registry) error {
	gen, err := nack.NewGeneratorInterceptor(nack.GeneratorSize(512))
	if err != nil {
		return err
	}
	recv, err := report.NewReceiverInterceptor()
	if err != nil {
		return err
	}
	reg.Add(gen)
	reg.Add(recv)
	return nil
}

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"},
}

func registerCodecs(me *webrtc.MediaEngine) error {
	type c struct {
		mime, fmtp string
		pt         webrtc.PayloadType
	}
	video := []c{
		{webrtc.MimeTypeVP8, "", 96},
		{webrtc.MimeTypeVP9, "profile-id=0", 98},
		{webrtc.MimeTypeVP9, "profile-id=2", 100},
		{webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", 102},
		{webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", 108},
		{webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f", 127},
		{webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032", 123},
		{webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f", 106},
	}
	for _, v := range video {
		err := me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: v.mime, ClockRate: 90000,
				SDPFmtpLine: v.fmtp, RTCPFeedback: videoFeedback},
			PayloadType: v.pt,
		}, webrtc.RTPCodecTypeVideo)
		if err != nil {
			return err
		}
	}
	return me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000,
			Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType: 111,
	}, webrtc.RTPCodecTypeAudio)
}

// room returns the stream's room, creating it.
func (r *Relay) room(streamID string) (*room, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	rm := r.rooms[streamID]
	if rm == nil {
		rm = newRoom(r, streamID)
		r.rooms[streamID] = rm
	}
	return rm, nil
}

// existingRoom returns the stream's room or nil.
func (r *Relay) existingRoom(streamID string) *room {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rooms[streamID]
}

// dropRoomIfIdle forgets a room that has no peers and default mute state.
func (r *Relay) dropRoomIfIdle(rm *room) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rooms[rm.id] == rm && rm.idle() {
		delete(r.rooms, rm.id)
		rm.stopTimers()
	}
}

// Publish answers a WHIP offer: the stream's single publisher.
func (r *Relay) Publish(ctx context.Context, streamID, offer string) (answer, resourceID string, err error) {
	answer, resourceID, err = r.join(ctx, streamID, offer, (*room).publish)
	if err != nil {
		return "", "", err
	}
	if r.opts.OnPublisher != nil {
		r.opts.OnPublisher(streamID, resourceID, true)
	}
	return answer, resourceID, nil
}

// Subscribe answers a WHEP offer. It works before the publisher arrives.
func (r *Relay) Subscribe(ctx context.Context, streamID, offer string) (answer, resourceID string, err error) {
	return r.join(ctx, streamID, offer, (*room).subscribe)
}

// CheckOffer is the package's CheckOffer and the relay's bound on the offer's remote
// candidates (Options.MaxRemoteCandidates): the HTTP edge judges an offer's shape
// before the stream's state.
func (r *Relay) CheckOffer(offer string, role Role) error {
	if err := CheckOffer(offer, role); err != nil {
		return err
	}
	_, _, err := screenOffer(offer, r.opts.MaxRemoteCandidates)
	return err
}

// join runs the steps WHIP and WHEP share: check the offer and its candidates, find or
// make the room, negotiate, and forget the room again if the negotiation left it empty.
func (r *Relay) join(ctx context.Context, streamID, offer string,
	negotiate func(rm *room, ctx context.Context, offer string, kinds []webrtc.RTPCodecType, cands *candidateSet) (string, string, error),
) (answer, resourceID string, err error) {
	kinds, err := offerKinds(offer)
	if err != nil {
		return "", "", err
	}
	offer, keys, err := screenOffer(offer, r.opts.MaxRemoteCandidates)
	if err != nil {
		return "", "", err
	}
	cands := newCandidateSet(r.opts.MaxRemoteCandidates)
	_ = cands.add(keys) // distinct and within the bound: screenOffer refused more
	rm, err := r.room(streamID)
	if err != nil {
		return "", "", err
	}
	answer, resourceID, err = negotiate(rm, ctx, offer, kinds, cands)
	if err != nil {
		r.dropRoomIfIdle(rm)
		return "", "", err
	}
	return answer, resourceID, nil
}

// Delete ends one session of the given role.
func (r *Relay) Delete(streamID, resourceID string, role Role) error {
	rm := r.existingRoom(streamID)
	if rm == nil {
		return ErrNotFound
	}
	return rm.deleteSession(resourceID, role)
}

// Patch applies a trickle-ICE SDP fragment (RFC 8840) to one session. An ICE restart
// (new ufrag) is not supported: ErrNotSupported. A fragment that would pass the
// session's bound on remote candidates is ErrBadFragment (ErrTooManyCandidates) and
// none of its candidates is taken.
func (r *Relay) Patch(streamID, resourceID string, role Role, frag string) error {
	rm := r.existingRoom(streamID)
	if rm == nil {
		return ErrNotFound
	}
	pc, cands := rm.session(resourceID, role)
	if pc == nil {
		return ErrNotFound
	}
	return applyTrickle(pc, frag, cands)
}

// Exists tells whether a session of the role is open.
func (r *Relay) Exists(streamID, resourceID string, role Role) bool {
	rm := r.existingRoom(streamID)
	return rm != nil && rm.sessionPC(resourceID, role) != nil
}

// SetMute changes the mute state of the kinds given (nil leaves a kind as it is) and
// returns the state after the change.
func (r *Relay) SetMute(streamID string, audio, video *bool) (audioMuted, videoMuted bool) {
	rm, err := r.room(streamID)
	if err != nil {
		return false, false
	}
	a, v := rm.setMute(audio, video)
	r.dropRoomIfIdle(rm)
	return a, v
}

// Mute returns the stream's mute state.
func (r *Relay) Mute(streamID string) (audioMuted, videoMuted bool) {
	rm := r.existingRoom(streamID)
	if rm == nil {
		return false, false
	}
	return rm.audioMuted.Load(), rm.videoMuted.Load()
}

// Live tells whether the stream has a publisher on this node.
func (r *Relay) Live(streamID string) bool {
	rm := r.existingRoom(streamID)
	return rm != nil && rm.hasPublisher()
}

// PublisherSession returns the resource id of the stream's publisher on this node, ""
// when it has none here.
func (r *Relay) PublisherSession(streamID string) string {
	rm := r.existingRoom(streamID)
	if rm == nil {
		return ""
	}
	if p := rm.pubPtr.Load(); p != nil && !p.upstream {
		return p.id
	}
	return ""
}

// Pulling tells whether the stream's media comes from another node (an upstream).
func (r *Relay) Pulling(streamID string) bool {
	rm := r.existingRoom(streamID)
	return rm != nil && rm.pulling()
}

// Viewers counts the stream's WHEP sessions.
func (r *Relay) Viewers(streamID string) int {
	rm := r.existingRoom(streamID)
	if rm == nil {
		return 0
	}
	return len(*rm.viewerList.Load())
}

// EndStream closes every peer of the stream and frees its room. OnPublisher is not
// called.
func (r *Relay) EndStream(streamID string) {
	r.mu.Lock()
	rm := r.rooms[streamID]
	delete(r.rooms, streamID)
	r.mu.Unlock()
	if rm != nil {
		rm.end()
	}
}

// Close ends every session and closes the UDP port. Streams that had a publisher are
// reported idle (OnPublisher false): they may go live again after a restart.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	rooms := make([]*room, 0, len(r.rooms))
	for _, rm := range r.rooms {
		rooms = append(rooms, rm)
	}
	r.mu.Unlock()
	for _, rm := range rooms {
		if p := rm.pubPtr.Load(); p != nil && !p.upstream {
			rm.removePublisher(p)
		}
		rm.end()
	}
	r.pullers.Wait() // each closes its upstream
	if r.stopReports != nil {
		r.stopOnce.Do(func() {
			close(r.stopReports)
			r.writers.stop()
		})
		<-r.reportsDone
	}
	r.mu.Lock()
	r.rooms = map[string]*room{}
	r.mu.Unlock()
	r.metrics.unregister()
	return r.mux.Close()
}

func newResourceID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
