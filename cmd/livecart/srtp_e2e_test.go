package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v3"
	"github.com/pion/webrtc/v3/pkg/media"

	"github.com/livecart/livecart/stream/rtctest"
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

// vp8Frames encodes frames of a moving picture (320×240, every one a keyframe of a few
// RTP packets, so any frame decodes alone) with the page's WebCodecs VP8 encoder (libvpx): a real
// bitstream for a pion publisher to send. JSON: [{"key":true,"data":"<base64>"}, …].
const vp8Frames = `(async () => {
  const w = 320, h = 240, n = 30;
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext('2d');
  const out = [];
  let failed = null;
  const enc = new VideoEncoder({
    output: (c) => {
      const b = new Uint8Array(c.byteLength);
      c.copyTo(b);
      let s = '';
      for (const x of b) s += String.fromCharCode(x);
      out.push({key: c.type === 'key', data: btoa(s)});
    },
    error: (e) => { failed = e; },
  });
  enc.configure({codec: 'vp8', width: w, height: h, bitrate: 1000000, framerate: 30});
  for (let i = 0; i < n; i++) {
    ctx.fillStyle = 'hsl(' + (i * 12) + ', 70%, 45%)';
    ctx.fillRect(0, 0, w, h);
    for (let k = 0; k < 150; k++) { // detail: frames of several packets each
      ctx.fillStyle = 'rgb(' + ((k * 37 + i) & 255) + ',' + ((k * 91) & 255) + ',' + ((k * 53 + 7 * i) & 255) + ')';
      ctx.fillRect((k * 29 + i * 5) % w, (k * 17) % h, 4, 4);
    }
    ctx.fillStyle = '#fff';
    ctx.fillRect((i * 9) % (w - 40), 100, 40, 40);
    const f = new VideoFrame(canvas, {timestamp: i * 33333});
    enc.encode(f, {keyFrame: true});
    f.close();
  }
  await enc.flush();
  if (failed) throw failed;
  return JSON.stringify(out);
})()`

// capturePeers keeps every RTCPeerConnection the page makes in window.__pcs, so the
// test can read the watch page's player's getStats().
const capturePeers = `(() => {
  const P = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends P {
    constructor(...args) { super(...args); window.__pcs.push(this); }
  };
})()`

// playerStats reads the watch page's player: its SRTP cipher, the VP8 frames its
// WebRTC receiver decoded, and the frames the <video> element presented.
const playerStats = `(async () => {
  const pc = (window.__pcs || []).at(-1);
  const v = document.querySelector('#video');
  const r = {cipher: '', codec: '', decoded: 0, shown: 0, state: pc ? pc.connectionState : 'none'};
  if (v && v.getVideoPlaybackQuality) r.shown = v.getVideoPlaybackQuality().totalVideoFrames;
  if (!pc) return JSON.stringify(r);
  const stats = await pc.getStats();
  stats.forEach((s) => {
    if (s.type === 'transport') r.cipher = s.srtpCipher || '';
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      r.decoded = s.framesDecoded || 0;
      const c = s.codecId && stats.get(s.codecId);
      if (c) r.codec = c.mimeType;
    }
  });
  return JSON.stringify(r);
})()`

// publishVP8 connects a pion publisher to /whip/{sid} and sends frames (looping, 30 a
// second) until the test ends.
func publishVP8(t *testing.T, base, sid, token string, frames [][]byte) {
	t.Helper()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "vp8")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	go func() { // keyframe requests and reports: read and dropped (every frame is a keyframe)
		for {
			if _, _, err := tr.Sender().ReadRTCP(); err != nil {
				return
			}
		}
	}()
	connected := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rtctest.Connect(ctx, pc, signalAt(base, "/whip/"+sid, token, nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatalf("publisher not connected: %s", pc.ConnectionState())
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(33 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := track.WriteSample(media.Sample{Data: frames[i%len(frames)], Duration: 33 * time.Millisecond}); err != nil {
				return
			}
		}
	}()
}

// metricValue reads one unlabelled metric from base's /metrics (-1 if absent).
func metricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	return -1
}

// TestBrowserDecodesDirectVideo: real VP8 (libvpx, through the page's WebCodecs) sent
// by a pion publisher is decoded and shown by the watch page in Chromium, with the
// viewer's RTP encrypted and sent by the relay itself (direct.go: the metric counts
// it, and no packet of it went any other way), for both SRTP profiles a Chromium
// viewer gets: AES-128-GCM (media.viewer_gcm_only) and the default list's pick.
func TestBrowserDecodesDirectVideo(t *testing.T) {
	b := e2e.NewBrowser(t)
	enc := b.NewTab(t, 0, 0)
	var frames [][]byte
	for _, gcmOnly := range []bool{true, false} {
		t.Run(fmt.Sprintf("viewer_gcm_only=%v", gcmOnly), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Auth.Secret = "srtp-e2e-secret-0123456789abcdef"
			cfg.Media.ViewerGCMOnly = gcmOnly
			m := startMain(t, "direct server", cfg)
			srv := &pagesServer{t: t, main: m, base: "http://" + m.Addr()}
			if frames == nil {
				enc.Navigate(srv.base + "/healthz") // a secure context (loopback) for WebCodecs
				var chunks []struct {
					Key  bool
					Data []byte
				}
				if err := json.Unmarshal([]byte(e2e.MustEval[string](enc, vp8Frames)), &chunks); err != nil {
					t.Fatal(err)
				}
				for _, c := range chunks {
					if !c.Key || len(c.Data) < 10 {
						t.Fatalf("encoder gave a frame of %d bytes, keyframe %v; want keyframes", len(c.Data), c.Key)
					}
					frames = append(frames, c.Data)
				}
				t.Logf("%d VP8 frames of %d-%d bytes", len(frames), len(frames[0]), len(frames[len(frames)-1]))
			}
			creator := srv.token(auth.RoleCreator, "c1", "Cleo")
			var st struct {
				ID string `json:"id"`
			}
			srv.api("POST", "/api/streams", creator, map[string]string{"title": "direct"}, &st)
			publishVP8(t, srv.base, st.ID, creator, frames)

			tab := b.NewTab(t, 800, 600)
			tab.AddInitScript(capturePeers)
			tab.Navigate(fmt.Sprintf("%s/watch/%s?token=%s", srv.base, st.ID, srv.token(auth.RoleViewer, "v1", "Vera")))
			const want = 30 // a second of video
			tab.WaitFor("frames decoded and shown", fmt.Sprintf(`(() => {
				const v = document.querySelector('#video');
				return v && v.videoWidth === 320 && v.getVideoPlaybackQuality().totalVideoFrames > %d;
			})()`, want), 10*time.Second)
			var got struct {
				Cipher, Codec, State string
				Decoded, Shown       int
			}
			if err := json.Unmarshal([]byte(e2e.MustEval[string](tab, playerStats)), &got); err != nil {
				t.Fatal(err)
			}
			t.Logf("player: %+v", got)
			if got.Decoded <= want || got.Shown <= want {
				t.Errorf("frames decoded %d, shown %d; want > %d each", got.Decoded, got.Shown, want)
			}
			if got.Codec != "video/VP8" {
				t.Errorf("codec %q, want video/VP8", got.Codec)
			}
			if gcmOnly && got.Cipher != "SRTP_AEAD_AES_128_GCM" {
				t.Errorf("srtpCipher %q with viewer_gcm_only, want SRTP_AEAD_AES_128_GCM", got.Cipher)
			}
			if !strings.HasPrefix(got.Cipher, "SRTP_") {
				t.Errorf("srtpCipher %q, want one", got.Cipher)
			}
			if n := metricValue(t, srv.base, "livecart_media_viewers_direct_total"); n != 1 {
				t.Errorf("livecart_media_viewers_direct_total = %v, want 1 (the one viewer on the relay's own SRTP output)", n)
			}
			if n := metricValue(t, srv.base, "livecart_media_direct_packets_dropped_total"); n != 0 {
				t.Errorf("livecart_media_direct_packets_dropped_total = %v, want 0", n)
			}
			if issues := tab.Issues(); len(issues) > 0 {
				t.Errorf("watch page logged errors: %q", issues)
			}
		})
	}
}
