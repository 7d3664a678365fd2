package stream

import (
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v3"
)

// offerKinds parses an offer and lists the media kinds it carries (audio, video).
// An offer that does not parse or has neither kind is ErrBadOffer.
func offerKinds(offer string) ([]webrtc.RTPCodecType, error) {
	_, kinds, err := parseOffer(offer)
	return kinds, err
}

// parseOffer is offerKinds that also returns the parsed offer.
func parseOffer(offer string) (*sdp.SessionDescription, []webrtc.RTPCodecType, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	var kinds []webrtc.RTPCodecType
	seen := map[webrtc.RTPCodecType]bool{}
	for _, m := range sd.MediaDescriptions {
		k := webrtc.NewRTPCodecType(m.MediaName.Media)
		if k == 0 || seen[k] {
			continue
		}
		seen[k] = true
		kinds = append(kinds, k)
	}
	if len(kinds) == 0 {
		return nil, nil, fmt.Errorf("%w: no audio or video section", ErrBadOffer)
	}
	return &sd, kinds, nil
}

// CheckOffer reports whether offer is an SDP offer the relay can take from the role,
// else ErrBadOffer: it parses and has an audio or video section going the role's way
// (a publisher's sends: sendonly or sendrecv; a viewer's receives: recvonly or
// sendrecv; not rejected with port 0). The HTTP edge judges the request's shape before
// the stream's state: a viewer's offer sent to WHIP would take the stream live with
// nothing to relay, and refuse the real publisher while it stays.
func CheckOffer(offer string, role Role) error {
	sd, _, err := parseOffer(offer)
	if err != nil {
		return err
	}
	session := sdpDirection(sd.Attributes, "sendrecv")
	for _, m := range sd.MediaDescriptions {
		if webrtc.NewRTPCodecType(m.MediaName.Media) == 0 || m.MediaName.Port.Value == 0 {
			continue
		}
		switch dir := sdpDirection(m.Attributes, session); {
		case dir == "sendrecv",
			dir == "sendonly" && role == RolePublisher,
			dir == "recvonly" && role == RoleViewer:
			return nil
		}
	}
	if role == RolePublisher {
		return fmt.Errorf("%w: no audio or video section that sends (a publisher's offer is sendonly or sendrecv)", ErrBadOffer)
	}
	return fmt.Errorf("%w: no audio or video section that receives (a viewer's offer is recvonly or sendrecv)", ErrBadOffer)
}

// acceptsMedia reports whether an answer takes an audio or video section of the offer
// (not rejected with port 0, nor inactive): one that rejects them all, as for an offer
// of codecs the relay does not have, would open a session with nothing to relay.
func acceptsMedia(answer string) bool {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		return false
	}
	session := sdpDirection(sd.Attributes, "sendrecv")
	for _, m := range sd.MediaDescriptions {
		if webrtc.NewRTPCodecType(m.MediaName.Media) != 0 && m.MediaName.Port.Value != 0 &&
			sdpDirection(m.Attributes, session) != "inactive" {
			return true
		}
	}
	return false
}

// sdpDirection is the direction attribute among attrs (RFC 8866), else def.
func sdpDirection(attrs []sdp.Attribute, def string) string {
	for _, a := range attrs {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			return a.Key
		}
	}
	return def
}

// applyTrickle adds the candidates of an RFC 8840 SDP fragment. A fragment whose
// ice-ufrag differs from the session's asks for an ICE restart: ErrNotSupported. The
// useless candidates (candidateKey) are left out; one that would give the session
// more remote candidates than cands takes is ErrBadFragment and adds none (cands nil:
// no bound, an upstream's session).
func applyTrickle(pc *webrtc.PeerConnection, frag string, cands *candidateSet) error {
	remote := pc.RemoteDescription()
	if remote == nil {
		return ErrNotFound
	}
	current := sdpAttr(remote.SDP, "ice-ufrag")
	mid := ""
	var adds []webrtc.ICECandidateInit
	var keys []string
	for _, line := range strings.Split(frag, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			if u := strings.TrimPrefix(line, "a=ice-ufrag:"); current != "" && u != current {
				return ErrNotSupported
			}
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:"):
			value := strings.TrimPrefix(line, "a=")
			key, useless := candidateKey(value)
			if useless {
				continue
			}
			m := mid
			adds = append(adds, webrtc.ICECandidateInit{Candidate: value, SDPMid: &m})
			keys = append(keys, key)
		case line == "", strings.HasPrefix(line, "a="), strings.HasPrefix(line, "m="):
		default:
			return fmt.Errorf("%w: unexpected line %q", ErrBadFragment, line)
		}
	}
	if cands != nil {
		if err := cands.add(keys); err != nil {
			return fmt.Errorf("%w: %w", ErrBadFragment, err)
		}
	}
	for _, c := range adds {
		if err := pc.AddICECandidate(c); err != nil {
			return fmt.Errorf("%w: %v", ErrBadFragment, err)
		}
	}
	return nil
}

// sdpAttr returns the first value of attribute name in an SDP text.
func sdpAttr(text, name string) string {
	prefix := "a=" + name + ":"
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, prefix) {
			return strings.TrimPrefix(line, prefix)
		}
	}
	return ""
}
