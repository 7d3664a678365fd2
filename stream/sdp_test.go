package stream

import (
	"errors"
	"testing"
)

// TestCheckOfferDirection: an offer is taken from a role only with an audio or video
// section going its way, by the section's direction attribute, else the session's,
// else sendrecv (RFC 8866); a section rejected with port 0 does not count.
func TestCheckOfferDirection(t *testing.T) {
	offer := func(session, audio, video string) string {
		s := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" + session +
			"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n" + audio
		if video != "" {
			s += "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n" + video
		}
		return s
	}
	for _, tc := range []struct {
		name              string
		offer             string
		publisher, viewer bool // taken from that role
	}{
		{"sendonly", offer("", "a=sendonly\r\n", "a=sendonly\r\n"), true, false},
		{"recvonly", offer("", "a=recvonly\r\n", "a=recvonly\r\n"), false, true},
		{"sendrecv", offer("", "a=sendrecv\r\n", ""), true, true},
		{"no direction: sendrecv", offer("", "", ""), true, true},
		{"inactive", offer("", "a=inactive\r\n", "a=inactive\r\n"), false, false},
		{"session's direction", offer("a=recvonly\r\n", "", ""), false, true},
		{"a section's direction wins", offer("a=recvonly\r\n", "a=sendonly\r\n", ""), true, false},
		{"one section that sends", offer("", "a=inactive\r\n", "a=sendonly\r\n"), true, false},
		{"rejected section (port 0)", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\n", false, false},
	} {
		for _, r := range []struct {
			role Role
			want bool
		}{{RolePublisher, tc.publisher}, {RoleViewer, tc.viewer}} {
			err := CheckOffer(tc.offer, r.role)
			if got := err == nil; got != r.want || (err != nil && !errors.Is(err, ErrBadOffer)) {
				t.Errorf("%s, role %d: got %v, want taken %v (else ErrBadOffer)", tc.name, r.role, err, r.want)
			}
		}
	}
}

// TestAcceptsMedia: an answer that rejects every audio and video section (port 0) or
// leaves them inactive takes no media.
func TestAcceptsMedia(t *testing.T) {
	head := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
	for _, tc := range []struct {
		name, answer string
		want         bool
	}{
		{"audio taken", head + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n", true},
		{"all rejected", head + "m=audio 0 UDP/TLS/RTP/SAVPF 0\r\nm=video 0 UDP/TLS/RTP/SAVPF 0\r\n", false},
		{"one of two rejected", head + "m=audio 0 UDP/TLS/RTP/SAVPF 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n", true},
		{"inactive", head + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=inactive\r\n", false},
		{"data only", head + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", false},
	} {
		if got := acceptsMedia(tc.answer); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
