package stream

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v2"
)

// TestGCMSealerMatchesPion: the relay's own AES-GCM SRTP output is byte for byte what
// pion's srtp.Context makes of the same packets, for both GCM profiles and two SSRCs,
// through a sequence-number wrap, late packets (NACK resends) from before and after
// it, a jump of more than 2^15 and a first packet near the top of the range.
func TestGCMSealerMatchesPion(t *testing.T) {
	seqs := []uint16{65000, 65001, 65535, 0, 1, 65534, 2, 3, 100, 65533, 40000, 40001, 7000, 20000, 50000, 50001, 1, 2}
	for _, prof := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm} {
		keyLen, err := prof.KeyLen()
		if err != nil {
			t.Fatal(err)
		}
		saltLen, err := prof.SaltLen()
		if err != nil {
			t.Fatal(err)
		}
		key, salt := make([]byte, keyLen), make([]byte, saltLen)
		for i := range key {
			key[i] = byte(3*i + 7)
		}
		for i := range salt {
			salt[i] = byte(5*i + 1)
		}
		ctx, err := srtp.CreateContext(key, salt, prof)
		if err != nil {
			t.Fatal(err)
		}
		g, err := newGCMSealer(key, salt)
		if err != nil {
			t.Fatal(err)
		}
		payload := make([]byte, 1000)
		for i := range payload {
			payload[i] = byte(i)
		}
		for i, seq := range seqs {
			for _, ssrc := range []uint32{0x1234, 0xfeedbeef} {
				h := &rtp.Header{Version: 2, PayloadType: 96, Marker: i%3 == 0, SequenceNumber: seq + uint16(ssrc&1),
					Timestamp: uint32(i) * 3000, SSRC: ssrc}
				plain, err := h.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				want, err := ctx.EncryptRTP(nil, append(plain, payload[:100+i]...), &rtp.Header{})
				if err != nil {
					t.Fatal(err)
				}
				got, err := g.seal(plain, h, payload[:100+i])
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%v, packet %d (seq %d, ssrc %#x): sealed bytes differ from pion's", prof, i, h.SequenceNumber, ssrc)
				}
			}
		}
	}
}
