package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/livecart/livecart/web/auth"
	"github.com/livecart/livecart/web/pages/e2e"
)

// whepCipher connects a receive-only RTCPeerConnection in the page to /whep/{sid} and
// returns its connection state and the transport's SRTP cipher from getStats().
const whepCipher = `(async () => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => {
    if (pc.iceGatheringState === 'complete') return r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
    setTimeout(r, 2000);
  });
  const res = await fetch('/whep/%s', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: pc.localDescription.sdp});
  if (res.status !== 201) return 'whep ' + res.status;
  await pc.setRemoteDescription({type: 'answer', sdp: await res.text()});
  for (let i = 0; i < 100 && pc.connectionState !== 'connected'; i++) await new Promise(r => setTimeout(r, 100));
  const state = pc.connectionState;
  let cipher = '';
  (await pc.getStats()).forEach(s => { if (s.type === 'transport') cipher = s.srtpCipher || ''; });
  pc.close();
  return state === 'connected' && cipher ? cipher : 'not connected: ' + state;
})()`

// TestBrowserViewerSRTP: a Chromium WHEP viewer connects with the default SRTP list
// (Chromium picks SHA1-80 from it) and gets AES-128-GCM with media.viewer_gcm_only.
func TestBrowserViewerSRTP(t *testing.T) {
	b := e2e.NewBrowser(t)
	for _, gcmOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("viewer_gcm_only=%v", gcmOnly), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Auth.Secret = "srtp-e2e-secret-0123456789abcdef"
			cfg.Media.ViewerGCMOnly = gcmOnly
			m := startMain(t, "srtp server", cfg)
			srv := &pagesServer{t: t, main: m, base: "http://" + m.Addr()}
			var st struct {
				ID string `json:"id"`
			}
			srv.api("POST", "/api/streams", srv.token(auth.RoleCreator, "c1", "Cleo"), map[string]string{"title": "srtp"}, &st)
			tab := b.NewTab(t, 0, 0)
			tab.Navigate(srv.base + "/healthz")
			cipher := e2e.MustEval[string](tab, fmt.Sprintf(whepCipher, st.ID))
			t.Logf("srtpCipher %s", cipher)
			switch {
			case !strings.HasPrefix(cipher, "SRTP_"):
				t.Fatalf("got %q, want a connected viewer and its SRTP cipher", cipher)
			case gcmOnly && cipher != "SRTP_AEAD_AES_128_GCM":
				t.Errorf("srtpCipher %s with viewer_gcm_only, want SRTP_AEAD_AES_128_GCM", cipher)
			}
		})
	}
}
