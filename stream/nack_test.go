package stream

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

func TestNACKResponderResendsBounded(t *testing.T) {
	f := nackResponderFactory{size: 64}
	i, err := f.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	var written []uint16
	w := i.BindLocalStream(&interceptor.StreamInfo{SSRC: 7, RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}}},
		interceptor.RTPWriterFunc(func(h *rtp.Header, _ []byte, _ interceptor.Attributes) (int, error) {
			written = append(written, h.SequenceNumber)
			return 0, nil
		}))
	for seq := uint16(100); seq < 300; seq++ {
		_, _ = w.Write(&rtp.Header{SequenceNumber: seq}, []byte{1}, nil)
	}
	read := func(nacks []rtcp.NackPair) []uint16 {
		raw, _ := (&rtcp.TransportLayerNack{MediaSSRC: 7, Nacks: nacks}).Marshal()
		r := i.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
			return copy(b, raw), a, nil
		}))
		written = nil
		if _, _, err := r.Read(make([]byte, 1500), nil); err != nil {
			t.Fatal(err)
		}
		return written
	}
	// 290 and 291 are in the history; 150 has been overwritten (64 slots).
	if got := read([]rtcp.NackPair{{PacketID: 290, LostPackets: 1}, {PacketID: 150}}); len(got) != 2 || got[0] != 290 || got[1] != 291 {
		t.Errorf("resent %v, want [290 291]", got)
	}
	if got := read([]rtcp.NackPair{{PacketID: 290}}); len(got) != 0 {
		t.Errorf("NACK again at once: resent %v, want nothing (hold-off)", got)
	}
	var many []rtcp.NackPair
	for seq := uint16(236); seq < 290; seq += 17 {
		many = append(many, rtcp.NackPair{PacketID: seq, LostPackets: 0xffff})
	}
	if got := read(many); len(got) > maxResendPerNACK {
		t.Errorf("resent %d packets for one NACK, want at most %d", len(got), maxResendPerNACK)
	}
}

// TestSenderReportCounts: the responder counts written packets for the sender reports
// (resends are not counted, as with pion's report interceptor) and extrapolates the
// RTP time from the newest packet; a stream without NACK has no history and a NACK for
// it resends nothing.
func TestSenderReportCounts(t *testing.T) {
	f := nackResponderFactory{size: 64}
	i, err := f.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	defer i.Close()
	n := i.(*nackResponder)
	var writes int
	w := i.BindLocalStream(&interceptor.StreamInfo{SSRC: 9, ClockRate: 48000},
		interceptor.RTPWriterFunc(func(*rtp.Header, []byte, interceptor.Attributes) (int, error) {
			writes++
			return 0, nil
		}))
	for seq := uint16(65530); seq != 10; seq++ { // across the wrap
		_, _ = w.Write(&rtp.Header{SSRC: 9, SequenceNumber: seq, Timestamp: 960 * uint32(seq)}, make([]byte, 100), nil)
	}
	_, _ = w.Write(&rtp.Header{SSRC: 9, SequenceNumber: 5, Timestamp: 1}, make([]byte, 100), nil) // late: not the newest
	s := n.streams[9]
	at := s.lastAt.Add(500 * time.Millisecond)
	sr := s.report(at)
	if sr == nil {
		t.Fatal("no report after packets")
	}
	if sr.SSRC != 9 || sr.PacketCount != 17 || sr.OctetCount != 1700 {
		t.Errorf("report SSRC %d packets %d octets %d, want 9, 17, 1700", sr.SSRC, sr.PacketCount, sr.OctetCount)
	}
	if want := 960*uint32(9) + 24000; sr.RTPTime != want {
		t.Errorf("RTP time %d, want %d (newest packet + 0.5 s at 48 kHz)", sr.RTPTime, want)
	}
	if got := time.Unix(int64(sr.NTPTime>>32)-2208988800, int64((sr.NTPTime&0xffffffff)*1e9>>32)); got.Sub(at).Abs() > time.Microsecond {
		t.Errorf("NTP time %v, want %v", got, at)
	}
	raw, _ := (&rtcp.TransportLayerNack{MediaSSRC: 9, Nacks: []rtcp.NackPair{{PacketID: 3}}}).Marshal()
	r := i.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(b, raw), a, nil
	}))
	writes = 0
	if _, _, err := r.Read(make([]byte, 1500), nil); err != nil {
		t.Fatal(err)
	}
	if writes != 0 {
		t.Errorf("NACK on a stream without NACK feedback resent %d packets", writes)
	}
}
