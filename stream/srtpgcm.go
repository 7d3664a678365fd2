package stream

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"

	"github.com/pion/rtp"
)

// gcmSealer encrypts one viewer's RTP with SRTP's AEAD_AES_128_GCM or
// AEAD_AES_256_GCM (RFC 7714), exactly as pion's srtp.Context does (same session keys,
// IVs, rollover counts; TestGCMSealerMatchesPion compares the bytes), without what
// the context adds per packet: it parses the header the writer has just marshalled,
// looks the SSRC up in a map, marshals the header again and needs the payload copied
// in first. Here the header is marshalled once and the payload is sealed from the
// shared packet straight into the datagram. The caller serializes calls (directOut.mu).
type gcmSealer struct {
	aead  cipher.AEAD
	salt  [12]byte
	ssrcs []rolloverState // one per track: a linear search beats a map
}

// rolloverState is pion's srtpSSRCState's index: the highest packet index sent.
type rolloverState struct {
	ssrc    uint32
	index   uint64
	started bool
}

var errSRTPExhausted = errors.New("stream: 2^48 SRTP packets sent under one key")

// newGCMSealer derives the SRTP session key and salt from the master key and salt
// (RFC 3711 4.3.3, AES-CM PRF, key derivation rate 0) as pion does.
func newGCMSealer(masterKey, masterSalt []byte) (*gcmSealer, error) {
	key, err := srtpKDF(0x00, masterKey, masterSalt, len(masterKey)) // SRTP encryption key
	if err != nil {
		return nil, err
	}
	salt, err := srtpKDF(0x02, masterKey, masterSalt, 12) // SRTP salting key
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	g := &gcmSealer{aead: aead}
	copy(g.salt[:], salt)
	return g, nil
}

// srtpKDF is SRTP's AES-CM key derivation with a key derivation rate of 0.
func srtpKDF(label byte, masterKey, masterSalt []byte, n int) ([]byte, error) {
	block, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, err
	}
	var in [16]byte
	copy(in[:], masterSalt)
	in[7] ^= label
	out := make([]byte, (n+15)/16*16)
	for i := 0; i < n; i += 16 {
		binary.BigEndian.PutUint16(in[14:], uint16(i/16))
		block.Encrypt(out[i:i+16], in[:])
	}
	return out[:n], nil
}

// seal encrypts payload for h, whose header is marshalled in dst (its length), and
// appends the ciphertext and tag to dst.
func (g *gcmSealer) seal(dst []byte, h *rtp.Header, payload []byte) ([]byte, error) {
	roc, err := g.rollover(h.SSRC, h.SequenceNumber)
	if err != nil {
		return nil, err
	}
	var iv [12]byte
	binary.BigEndian.PutUint32(iv[2:], h.SSRC)
	binary.BigEndian.PutUint32(iv[6:], roc)
	binary.BigEndian.PutUint16(iv[10:], h.SequenceNumber)
	for i := range iv {
		iv[i] ^= g.salt[i]
	}
	return g.aead.Seal(dst, iv[:], payload, dst), nil
}

// rollover returns the rollover count for seq on ssrc and moves the index on: pion's
// nextRolloverCount and updateRolloverCount (srtp v2 context.go), the count guessed
// from the highest index sent, within 2^15.
func (g *gcmSealer) rollover(ssrc uint32, seq uint16) (uint32, error) {
	var s *rolloverState
	for i := range g.ssrcs {
		if g.ssrcs[i].ssrc == ssrc {
			s = &g.ssrcs[i]
			break
		}
	}
	if s == nil {
		g.ssrcs = append(g.ssrcs, rolloverState{ssrc: ssrc})
		s = &g.ssrcs[len(g.ssrcs)-1]
	}
	if !s.started {
		s.started = true
		s.index |= uint64(seq)
		return 0, nil
	}
	const median, span = 1 << 15, 1 << 16
	sq := int32(seq)
	localRoc := uint32(s.index >> 16)
	localSeq := int32(s.index & (span - 1))
	roc, diff := localRoc, sq-localSeq
	if s.index > median {
		switch {
		case localSeq < median && sq-localSeq > median:
			roc, diff = localRoc-1, sq-localSeq-span
		case localSeq >= median && localSeq-median > sq:
			roc, diff = localRoc+1, sq-localSeq+span
		}
	}
	if roc == 0 && localRoc == 1<<32-1 {
		return 0, errSRTPExhausted
	}
	if diff > 0 {
		s.index += uint64(diff)
	}
	return roc, nil
}
