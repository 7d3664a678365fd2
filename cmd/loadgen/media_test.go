package main

import (
	"testing"

	"github.com/pion/dtls/v2"
)

func TestParseMediaFlagsViewerSRTP(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want []dtls.SRTPProtectionProfile
		ok   bool
	}{
		{"default", nil, true},
		{"sha1", []dtls.SRTPProtectionProfile{dtls.SRTP_AES128_CM_HMAC_SHA1_80}, true},
		{"gcm", nil, false},
	} {
		c, err := parseMediaFlags([]string{"-token", "t", "-viewer-srtp", tc.arg})
		if (err == nil) != tc.ok {
			t.Fatalf("-viewer-srtp %s: error %v, want ok=%v", tc.arg, err, tc.ok)
		}
		if len(c.viewerSRTP) != len(tc.want) || (len(tc.want) > 0 && c.viewerSRTP[0] != tc.want[0]) {
			t.Errorf("-viewer-srtp %s: profiles %v, want %v", tc.arg, c.viewerSRTP, tc.want)
		}
	}
}
