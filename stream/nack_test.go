package stream

import (
	"testing"

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
