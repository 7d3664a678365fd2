package stream

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v3"
)

// entry is one queued packet for one viewer.
type entry struct {
	p      *packet
	rebase bool      // first packet after a gap the relay made: keep the output continuous
	at     time.Time // queued (a replayed group of pictures is queued now, read earlier)
}

// viewer is one WHEP session with its own queue, written by one of the relay's writers.
type viewer struct {
	id        string
	room      *room
	pc        *webrtc.PeerConnection
	cands     *candidateSet   // the remote candidates it was given
	tracks    [3]*viewerTrack // by kind; nil when not negotiated (or Baseline)
	q         chan entry      // drained by the viewer's writer w (writers.go)
	w         *writer
	closed    atomic.Bool
	connected atomic.Bool
	sent      [3]atomic.Int64 // packets written, by kind

	// The relay's own SRTP output (direct.go), keyed on the first write.
	transport  *webrtc.DTLSTransport
	remote     atomic.Pointer[remoteAddr] // the selected candidate pair's remote end (nil: not known yet)
	directOnce sync.Once
	dout       *directOut // set by directOnce; nil: pion's write chain

	// Liveness from the viewer's receiver reports (liveness.go).
	progressAt   atomic.Int64 // unix ns: a report last advanced on any track
	overdueTicks int          // the report loop's: ticks in a row found overdue
}

// subscribe negotiates a viewer. It is in the room (inactive) from the start, so the
// fan-out sees it as soon as its connection is up.
func (rm *room) subscribe(ctx context.Context, offer string, kinds []webrtc.RTPCodecType, cands *candidateSet) (string, string, error) {
	pc, err := rm.relay.viewAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", "", err
	}
	v := &viewer{id: newResourceID(), room: rm, pc: pc, cands: cands}
	if !rm.relay.opts.Baseline {
		v.q = make(chan entry, rm.relay.opts.QueueLen)
	}
	var senders []*webrtc.RTPSender
	for _, k := range kinds {
		var track webrtc.TrackLocal
		if b := rm.baseline[k]; b != nil {
			track = b
		} else {
			v.tracks[k] = &viewerTrack{v: v, kind: k}
			track = v.tracks[k]
		}
		tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			_ = pc.Close()
			return "", "", err
		}
		senders = append(senders, tr.Sender())
	}
	if len(senders) > 0 && v.q != nil {
		v.transport = senders[0].Transport()
		v.transport.ICETransport().OnSelectedCandidatePairChange(v.setRemote)
	}
	pc.OnConnectionStateChange(v.onState)
	if v.q != nil {
		rm.relay.writers.add(v)
	}
	if err := rm.addViewer(v); err != nil {
		if v.w != nil {
			v.w.remove(v)
		}
		_ = pc.Close()
		return "", "", err
	}
	for i, s := range senders {
		go v.readRTCP(s, v.tracks[kinds[i]])
	}
	answer, err := negotiate(ctx, pc, offer)
	if err != nil {
		v.close()
		return "", "", err
	}
	return answer, v.id, nil
}

func (v *viewer) onState(s webrtc.PeerConnectionState) {
	switch s {
	case webrtc.PeerConnectionStateConnected:
		v.connected.Store(true)
		for _, t := range v.tracks {
			if t != nil {
				t.tryActivate()
			}
		}
		if v.room.relay.opts.Baseline {
			v.room.requestKeyframe()
		}
	case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
		v.close()
	}
}

// close ends the session; safe to call more than once and from any goroutine.
func (v *viewer) close() {
	if v.closed.Swap(true) {
		return
	}
	if v.w != nil {
		v.w.remove(v)
	}
	v.room.removeViewer(v)
	_ = v.pc.Close()
}

// readRTCP forwards the viewer's keyframe requests upward (throttled by the room) and
// answers its NACKs for track t (nil in Baseline, where pion's interceptor does).
func (v *viewer) readRTCP(s *webrtc.RTPSender, t *viewerTrack) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				v.room.requestKeyframe()
			case *rtcp.TransportLayerNack:
				if t != nil {
					t.resend(p)
				}
			case *rtcp.ReceiverReport:
				if t != nil {
					v.heardReports(t, p.Reports)
				}
			case *rtcp.Goodbye:
				// A puller (another node) leaving: its BYE names our SSRCs (see
				// sayGoodbye). Not waiting for the ICE timeouts.
				go v.close()
				return
			}
		}
	}
}

// maxQueueDelay is the oldest a packet may be when its viewer's writer gets to it.
const maxQueueDelay = 400 * time.Millisecond

// writeBatch bounds the packets a writer sends for one viewer before it turns to its
// next viewer.
const writeBatch = 32

// write rewrites one packet for this viewer and sends it, on sb (its writer's own
// batch) if not nil; false if dropped.
func (v *viewer) write(e entry, sb *sendBatch) bool {
	p := e.p
	t := v.tracks[p.kind]
	if v.room.muted(p.kind) {
		return false
	}
	b := t.binding.Load()
	if b == nil {
		return false
	}
	pt, ok := t.payloadType(b, p.codec)
	if !ok {
		return false
	}
	now := time.Now()
	if p.kind == kindVideo && t.skipToKey {
		if !p.keyStart || !e.rebase {
			v.room.relay.metrics.skipped.Inc()
			return false
		}
		t.skipToKey = false
	}
	if now.Sub(e.at) > maxQueueDelay {
		// This viewer's writer is behind: skip to fresh packets (video on a keyframe).
		v.room.relay.metrics.dropped.Inc()
		if p.kind == kindVideo {
			t.skipToKey = true
			if !t.waitKey.Swap(true) {
				v.room.requestKeyframe()
			}
		}
		return false
	}
	seq, ts, newest, ok := t.rewrite(e, now)
	if !ok {
		return false
	}
	seg := segment{seqOff: t.seqOff, tsOff: t.tsOff, gen: t.lastGen, ssrc: b.ssrc, pt: pt}
	newSeg := !t.segOK || t.seg.differs(seg)
	if newSeg {
		t.seg, t.segOK = seg, true
	}
	t.log.logWrite(newSeg, seg, seq, ts, newest, len(p.payload), now)
	// Reused: pion's write chain reads it at once; resends rebuild theirs.
	t.hdr = rtp.Header{
		Version:        2,
		Marker:         p.hdr.Marker,
		PayloadType:    pt,
		SequenceNumber: seq,
		Timestamp:      ts,
		SSRC:           b.ssrc,
		CSRC:           p.hdr.CSRC,
	}
	if err := v.writeRTP(b, &t.hdr, p.payload, sb); err != nil {
		return false
	}
	v.sent[p.kind].Add(1)
	return true
}

// viewerTrack is a TrackLocal bound to one viewer's sender. Its fan-out flags are set
// by the publisher's reader; its rewrite state belongs to the viewer's writer.
type viewerTrack struct {
	v    *viewer
	kind webrtc.RTPCodecType

	binding atomic.Pointer[binding]
	active  atomic.Bool // connected and bound: the fan-out may queue packets
	waitKey atomic.Bool // video: drop until the next keyframe starts

	// Owned by the viewer's writer (its goroutine).
	skipToKey bool // dropped stale video: write none until a keyframe the fan-out marked
	started   bool
	lastGen   uint64
	seqOff    uint16
	tsOff     uint32
	runStart  uint16 // the first output sequence number written with these offsets
	lastSeq   uint16
	lastExt   int64 // the newest packet's packet.ext
	lastTS    uint32
	lastAt    time.Time
	ptCodec   *codecInfo
	ptBind    *binding
	ptValue   uint8
	ptExists  bool
	seg       segment // the offsets of the packets being written
	segOK     bool
	hdr       rtp.Header // the header being written

	// What was written, for NACKs and sender reports (its own lock).
	log sendLog
	// What the viewer reports receiving (liveness.go; its own lock).
	reach reach
}

type binding struct {
	ssrc   uint32
	clock  uint32 // the first codec's clock rate, for the sender reports
	nack   bool   // the viewer takes NACK feedback for this track
	ws     webrtc.TrackLocalWriter
	codecs []webrtc.RTPCodecParameters
}

var _ webrtc.TrackLocal = (*viewerTrack)(nil)

// Bind is called by pion once the viewer's transports are up.
func (t *viewerTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	var codecs []webrtc.RTPCodecParameters
	for _, c := range ctx.CodecParameters() {
		if !strings.EqualFold(c.MimeType, "video/rtx") {
			codecs = append(codecs, c)
		}
	}
	if len(codecs) == 0 {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	nack := false
	for _, fb := range codecs[0].RTCPFeedback {
		nack = nack || (fb.Type == "nack" && fb.Parameter == "")
	}
	t.binding.Store(&binding{ssrc: uint32(ctx.SSRC()), clock: codecs[0].ClockRate, nack: nack,
		ws: ctx.WriteStream(), codecs: codecs})
	t.tryActivate()
	return codecs[0], nil
}

// Unbind stops the fan-out to this track.
func (t *viewerTrack) Unbind(webrtc.TrackLocalContext) error {
	t.active.Store(false)
	t.binding.Store(nil)
	return nil
}

func (t *viewerTrack) ID() string                { return t.kind.String() }
func (t *viewerTrack) RID() string               { return "" }
func (t *viewerTrack) StreamID() string          { return "livecart" }
func (t *viewerTrack) Kind() webrtc.RTPCodecType { return t.kind }

// tryActivate starts the flow once both the connection and the binding are up; video
// waits for a keyframe (the fan-out serves a cached one or requests one).
func (t *viewerTrack) tryActivate() {
	if !t.v.connected.Load() || t.binding.Load() == nil || t.v.closed.Load() {
		return
	}
	if t.kind == kindVideo {
		t.waitKey.Store(true)
	}
	t.active.Store(true)
}

// enqueueGroup queues a cached group of pictures and then pk; on a full queue the
// viewer goes back to waiting for a keyframe.
func (v *viewer) enqueueGroup(group []*packet, pk *packet) bool {
	t := v.tracks[kindVideo]
	t.waitKey.Store(false)
	for i, p := range group {
		select {
		case v.q <- entry{p: p, rebase: i == 0, at: pk.at}:
		default:
			t.waitKey.Store(true)
			return false
		}
	}
	select {
	case v.q <- entry{p: pk, at: pk.at}:
		return true
	default:
		t.waitKey.Store(true)
		return false
	}
}

// payloadType maps the publisher's codec to the payload type this viewer negotiated
// for it; false if the viewer cannot receive that codec.
func (t *viewerTrack) payloadType(b *binding, c *codecInfo) (uint8, bool) {
	if t.ptCodec == c && t.ptBind == b {
		return t.ptValue, t.ptExists
	}
	t.ptCodec, t.ptBind, t.ptExists = c, b, false
	for pass := 0; pass < 2 && !t.ptExists; pass++ {
		for _, bc := range b.codecs {
			if !strings.EqualFold(bc.MimeType, c.mime) {
				continue
			}
			if pass == 0 && bc.SDPFmtpLine != c.fmtp {
				continue
			}
			if pass == 1 && c.mime == strings.ToLower(webrtc.MimeTypeH264) &&
				fmtpParam(bc.SDPFmtpLine, "packetization-mode") != fmtpParam(c.fmtp, "packetization-mode") {
				continue
			}
			t.ptValue, t.ptExists = uint8(bc.PayloadType), true
			break
		}
	}
	return t.ptValue, t.ptExists
}

// rewrite maps the source's sequence number and timestamp into this viewer's
// continuous output: a new source or a relay-made gap rebases the offsets so the
// decoder sees the next number and a timestamp advanced by the wall time since. So
// does a packet more than maxSkip after the last one written (audio a slow viewer
// missed for minutes): its number, a jump of 2^15 or more, would read as a step back
// (a late packet, dropped, and every one after it; or written on an SRTP index
// already used).
// ok is false for a packet that would land before the run the offsets began with
// (late, from before the packet that rebased them): that number was written already,
// for another packet, and it is the SRTP packet index: a second payload under it
// would reuse the keystream (AES-CM) or the nonce (GCM).
func (t *viewerTrack) rewrite(e entry, now time.Time) (seq uint16, ts uint32, newest, ok bool) {
	p := e.p
	switch {
	case !t.started:
		t.started = true
		t.lastGen = p.gen
		t.seqOff, t.tsOff = 0, 0
		t.lastSeq = p.hdr.SequenceNumber - 1
		t.lastTS = p.hdr.Timestamp
		t.runStart = p.hdr.SequenceNumber
	case e.rebase || p.gen != t.lastGen || p.ext-t.lastExt > maxSkip:
		t.lastGen = p.gen
		ticks := uint32(now.Sub(t.lastAt).Seconds() * float64(p.codec.clock))
		if ticks == 0 {
			ticks = 1
		}
		t.seqOff = t.lastSeq + 1 - p.hdr.SequenceNumber
		t.tsOff = t.lastTS + ticks - p.hdr.Timestamp
		t.runStart = t.lastSeq + 1
	}
	seq = p.hdr.SequenceNumber + t.seqOff
	ts = p.hdr.Timestamp + t.tsOff
	if int16(seq-t.lastSeq) <= 0 {
		return seq, ts, false, int16(seq-t.runStart) >= 0
	}
	t.lastSeq, t.lastTS, t.lastAt, t.lastExt = seq, ts, now, p.ext
	if seq-t.runStart > maxSegmentSpan {
		t.runStart = seq - maxSegmentSpan // a long run: keep the distances inside int16
	}
	return seq, ts, true, true
}

// maxSkip is the longest gap a viewer's output keeps (packets the source sent that
// the viewer missed: ~80 s of audio); a longer one is closed up, well before 2^15,
// beyond which SRTP (its rollover count inferred from the distance) cannot follow.
const maxSkip = 1 << 12

func fmtpParam(fmtp, key string) string {
	for _, kv := range strings.Split(fmtp, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, key) {
			return val
		}
	}
	return ""
}
