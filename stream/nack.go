package stream

import (
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// nackResponder answers viewers' NACKs from a small per-track history. Unlike pion's
// responder (a goroutine and a packet copy per NACK), it resends on the RTCP reader's
// own goroutine, keeps the header by value and the payload by reference (the relay
// never reuses a payload it wrote), skips packets it resent moments ago and caps the resends per NACK: under
// loss, retransmissions must not snowball into more load and more loss.
type nackResponder struct {
	interceptor.NoOp
	size uint16

	mu      sync.Mutex
	streams map[uint32]*nackStream // guarded by mu
}

// Resend limits.
const (
	maxResendPerNACK = 48
	resendHoldoff    = 40 * time.Millisecond
)

type nackResponderFactory struct{ size uint16 }

func (f nackResponderFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &nackResponder{size: f.size, streams: map[uint32]*nackStream{}}, nil
}

type sentPacket struct {
	hdr      rtp.Header
	payload  []byte
	resentAt time.Time
}

type nackStream struct {
	writer interceptor.RTPWriter
	mu     sync.Mutex
	pkts   []sentPacket // guarded by mu; index seq % len
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
	if !supportsNACK(info) {
		return writer
	}
	s := &nackStream{writer: writer, pkts: make([]sentPacket, n.size)}
	n.mu.Lock()
	n.streams[info.SSRC] = s
	n.mu.Unlock()
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		s.mu.Lock()
		s.pkts[h.SequenceNumber%n.size] = sentPacket{hdr: *h, payload: payload}
		s.mu.Unlock()
		return writer.Write(h, payload, a)
	})
}

// UnbindLocalStream forgets the stream.
func (n *nackResponder) UnbindLocalStream(info *interceptor.StreamInfo) {
	n.mu.Lock()
	delete(n.streams, info.SSRC)
	n.mu.Unlock()
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
	if s == nil {
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
