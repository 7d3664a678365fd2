package stream

import (
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// nackResponder is the relay's one interceptor on the viewers' outgoing streams. It
// answers NACKs from a small per-track history and sends the RTCP sender reports.
// Unlike pion's responder (a goroutine and a packet copy per NACK), it resends on the
// RTCP reader's own goroutine, keeps the header by value and the payload by reference
// (the relay never reuses a payload it wrote), skips packets it resent moments ago and
// caps the resends per NACK: under loss, retransmissions must not snowball into more
// load and more loss. It counts for the sender reports under the same lock as it keeps
// the history: pion's report.SenderInterceptor would add another layer, lock and
// clock read to every packet.
type nackResponder struct {
	interceptor.NoOp
	size uint16

	mu      sync.Mutex
	streams map[uint32]*nackStream // guarded by mu
	closed  bool                   // guarded by mu
	stop    chan struct{}          // closed by Close
	wg      sync.WaitGroup         // the report loop
}

// Resend limits.
const (
	maxResendPerNACK = 48
	resendHoldoff    = 40 * time.Millisecond
	// reportInterval is the time between sender reports, as pion's.
	reportInterval = time.Second
)

type nackResponderFactory struct{ size uint16 }

func (f nackResponderFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &nackResponder{size: f.size, streams: map[uint32]*nackStream{}, stop: make(chan struct{})}, nil
}

type sentPacket struct {
	hdr      rtp.Header
	payload  []byte
	resentAt time.Time
}

type nackStream struct {
	writer    interceptor.RTPWriter
	ssrc      uint32
	clockRate float64

	mu   sync.Mutex
	pkts []sentPacket // guarded by mu; index seq % len; nil without NACK

	// For the sender reports; guarded by mu.
	packets, octets uint32
	lastSeq         uint16
	lastRTP         uint32    // RTP time of the newest packet
	lastAt          time.Time // when it was written
}

// record keeps a written packet for resends and counts it for the reports.
func (s *nackStream) record(h *rtp.Header, payload []byte, now time.Time) {
	s.mu.Lock()
	if s.pkts != nil {
		s.pkts[h.SequenceNumber%uint16(len(s.pkts))] = sentPacket{hdr: *h, payload: payload}
	}
	if d := h.SequenceNumber - s.lastSeq; s.packets == 0 || (d > 0 && d < 1<<15) {
		s.lastSeq, s.lastRTP, s.lastAt = h.SequenceNumber, h.Timestamp, now
	}
	s.packets++
	s.octets += uint32(len(payload))
	s.mu.Unlock()
}

// report is the stream's sender report at now, or nil before its first packet.
func (s *nackStream) report(now time.Time) *rtcp.SenderReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.packets == 0 {
		return nil
	}
	return &rtcp.SenderReport{
		SSRC:        s.ssrc,
		NTPTime:     toNTP(now),
		RTPTime:     s.lastRTP + uint32(now.Sub(s.lastAt).Seconds()*s.clockRate),
		PacketCount: s.packets,
		OctetCount:  s.octets,
	}
}

// toNTP converts t to a 64-bit NTP timestamp (seconds since 1900, 32.32 fixed point).
func toNTP(t time.Time) uint64 {
	const unixToNTP = 2208988800
	ns := uint64(t.UnixNano())
	sec := ns/1e9 + unixToNTP
	frac := (ns % 1e9) << 32 / 1e9
	return sec<<32 | frac
}

func supportsNACK(info *interceptor.StreamInfo) bool {
	for _, fb := range info.RTCPFeedback {
		if fb.Type == "nack" && fb.Parameter == "" {
			return true
		}
	}
	return false
}

// BindLocalStream records every packet written (the payload by reference).
func (n *nackResponder) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	s := &nackStream{writer: writer, ssrc: info.SSRC, clockRate: float64(info.ClockRate)}
	if supportsNACK(info) {
		s.pkts = make([]sentPacket, n.size)
	}
	n.mu.Lock()
	n.streams[info.SSRC] = s
	n.mu.Unlock()
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		s.record(h, payload, time.Now())
		return writer.Write(h, payload, a)
	})
}

// UnbindLocalStream forgets the stream.
func (n *nackResponder) UnbindLocalStream(info *interceptor.StreamInfo) {
	n.mu.Lock()
	delete(n.streams, info.SSRC)
	n.mu.Unlock()
}

// BindRTCPWriter starts the sender reports (once per PeerConnection).
func (n *nackResponder) BindRTCPWriter(writer interceptor.RTCPWriter) interceptor.RTCPWriter {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.closed {
		n.wg.Add(1)
		go n.reportLoop(writer)
	}
	return writer
}

// reportLoop writes a sender report for every stream that has sent, each interval,
// until Close.
func (n *nackResponder) reportLoop(w interceptor.RTCPWriter) {
	defer n.wg.Done()
	t := time.NewTicker(reportInterval)
	defer t.Stop()
	var streams []*nackStream
	for {
		select {
		case <-n.stop:
			return
		case now := <-t.C:
			n.mu.Lock()
			streams = streams[:0]
			for _, s := range n.streams {
				streams = append(streams, s)
			}
			n.mu.Unlock()
			for _, s := range streams {
				if sr := s.report(now); sr != nil {
					_, _ = w.Write([]rtcp.Packet{sr}, interceptor.Attributes{})
				}
			}
		}
	}
}

// Close stops the sender reports.
func (n *nackResponder) Close() error {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.stop)
	}
	n.mu.Unlock()
	n.wg.Wait()
	return nil
}

// BindRTCPReader resends what NACKs ask for, synchronously.
func (n *nackResponder) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		i, attr, err := reader.Read(b, a)
		if err != nil {
			return 0, nil, err
		}
		if attr == nil {
			attr = make(interceptor.Attributes)
		}
		pkts, err := attr.GetRTCPPackets(b[:i])
		if err != nil {
			return 0, nil, err
		}
		for _, p := range pkts {
			if nack, ok := p.(*rtcp.TransportLayerNack); ok {
				n.resend(nack)
			}
		}
		return i, attr, nil
	})
}

func (n *nackResponder) resend(nack *rtcp.TransportLayerNack) {
	n.mu.Lock()
	s := n.streams[nack.MediaSSRC]
	n.mu.Unlock()
	if s == nil || s.pkts == nil {
		return
	}
	now := time.Now()
	var todo []sentPacket
	s.mu.Lock()
	for _, pair := range nack.Nacks {
		if len(todo) >= maxResendPerNACK {
			break
		}
		pair.Range(func(seq uint16) bool {
			p := &s.pkts[seq%n.size]
			if p.payload == nil || p.hdr.SequenceNumber != seq || now.Sub(p.resentAt) < resendHoldoff {
				return true
			}
			p.resentAt = now
			todo = append(todo, *p)
			return len(todo) < maxResendPerNACK
		})
	}
	s.mu.Unlock()
	for _, p := range todo {
		if _, err := s.writer.Write(&p.hdr, p.payload, interceptor.Attributes{}); err != nil {
			return
		}
	}
}
