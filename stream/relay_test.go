package stream

import (
	"context"

	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livecart/livecart/stream/rtctest"
	"github.com/pion/dtls/v2"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v3"
)

// liveLog records OnPublisher calls.
type liveLog struct {
	mu     sync.Mutex
	events []string
}

func (l *liveLog) on(sid, _ string, live bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf("%s:%v", sid, live))
}

func (l *liveLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

func newTestRelay(t *testing.T, opts Options) (*Relay, *liveLog) {
	t.Helper()
	log := &liveLog{}
	opts.ListenIP = "127.0.0.1"
	opts.OnPublisher = log.on
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, log
}

var clientAPI = sync.OnceValues(rtctest.NewAPI)

func api(t *testing.T) *webrtc.API {
	t.Helper()
	a, err := clientAPI()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// light keeps -race runs on two cores cheap: 300 kb/s at 15 fps, keyframes only on
// request.
var light = rtctest.PublisherOptions{Bitrate: 300_000, FPS: 15, KeyInterval: -1}

// startPublisher connects a publisher and sends until the test ends or stop is called.
func startPublisher(t *testing.T, r *Relay, sid string) (p *rtctest.Publisher, rid string, stop func()) {
	t.Helper()
	p, err := rtctest.NewPublisher(api(t), light)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = p.Connect(ctx, func(ctx context.Context, offer string) (string, error) {
		ans, id, err := r.Publish(ctx, sid, offer)
		rid = id
		return ans, err
	})
	if err != nil {
		_ = p.Close()
		t.Fatalf("publish: %v", err)
	}
	runCtx, runCancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(runCtx); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			runCancel()
			<-done
			_ = p.Close()
		})
	}
	t.Cleanup(stop)
	return p, rid, stop
}

func startViewer(t *testing.T, r *Relay, sid string) (*rtctest.Viewer, string) {
	t.Helper()
	return startViewerWith(t, api(t), r, sid)
}

func startViewerWith(t *testing.T, a *webrtc.API, r *Relay, sid string) (*rtctest.Viewer, string) {
	t.Helper()
	return startViewerWithOptions(t, a, rtctest.ViewerOptions{}, r, sid)
}

func startViewerWithOptions(t *testing.T, a *webrtc.API, o rtctest.ViewerOptions, r *Relay, sid string) (*rtctest.Viewer, string) {
	t.Helper()
	v, err := rtctest.NewViewerWithOptions(a, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var rid string
	err = v.Connect(ctx, func(ctx context.Context, offer string) (string, error) {
		ans, id, err := r.Subscribe(ctx, sid, offer)
		rid = id
		return ans, err
	})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return v, rid
}

// slow stretches a timeout under -race.
func slow(d time.Duration) time.Duration {
	if raceEnabled {
		return 3 * d
	}
	return d
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// receiving waits until the viewer has at least n more packets of each kind.
func receiving(t *testing.T, v *rtctest.Viewer, n int, what string) rtctest.ViewerStats {
	t.Helper()
	base := v.Stats()
	var s rtctest.ViewerStats
	waitFor(t, slow(10*time.Second), what, func() bool {
		s = v.Stats()
		return s.Audio.Packets >= base.Audio.Packets+n && s.Video.Packets >= base.Video.Packets+n
	})
	return s
}

func TestFanOutReachesEveryViewer(t *testing.T) {
	for _, n := range []int{1, 10, 50} {
		t.Run(fmt.Sprintf("%d viewers", n), func(t *testing.T) {
			r, _ := newTestRelay(t, Options{})
			startPublisher(t, r, "s1")
			viewers := make([]*rtctest.Viewer, n)
			rids := make([]string, n)
			t.Cleanup(func() {
				for _, v := range viewers {
					if v != nil {
						_ = v.Close()
					}
				}
			})
			// Join in waves of 10 so that 50 DTLS handshakes at once do not starve
			// two cores (especially under -race).
			for lo := 0; lo < n; lo += 10 {
				var wg sync.WaitGroup
				errs := make(chan error, 10)
				for i := lo; i < min(lo+10, n); i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						v, err := rtctest.NewViewer(api(t), false)
						if err != nil {
							errs <- err
							return
						}
						viewers[i] = v
						ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
						defer cancel()
						errs <- v.Connect(ctx, func(ctx context.Context, offer string) (string, error) {
							ans, rid, err := r.Subscribe(ctx, "s1", offer)
							rids[i] = rid
							return ans, err
						})
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("viewer connect: %v", err)
					}
				}
			}
			deadline := time.Now().Add(slow(20 * time.Second))
			for {
				var slow []string
				for i, v := range viewers {
					if s := v.Stats(); s.Audio.Packets < 10 || s.Video.Packets < 10 {
						rm := r.existingRoom("s1")
						rm.mu.Lock()
						sv := rm.viewers[rids[i]]
						rm.mu.Unlock()
						vt := sv.tracks[kindVideo]
						slow = append(slow, fmt.Sprintf("%d(a%d v%d %s; server sent a%d v%d active %v wait %v bound %v queue %d)",
							i, s.Audio.Packets, s.Video.Packets, v.PC.ConnectionState(),
							sv.sent[kindAudio].Load(), sv.sent[kindVideo].Load(), vt.active.Load(), vt.waitKey.Load(), vt.binding.Load() != nil, len(sv.q)))
					}
				}
				if len(slow) == 0 {
					break
				}
				if time.Now().After(deadline) {
					buf := make([]byte, 8<<20)
					_ = os.WriteFile(os.TempDir()+"/stream-stacks.txt", buf[:runtime.Stack(buf, true)], 0o644)
					t.Fatalf("viewers not receiving: %v", slow)
				}
				time.Sleep(50 * time.Millisecond)
			}
			for i, v := range viewers {
				s := v.Stats()
				if s.Video.Keyframes == 0 || !s.FirstVideoKeyframe {
					t.Errorf("viewer %d: got %d keyframes, first video packet a keyframe: %v; want a keyframe first",
						i, s.Video.Keyframes, s.FirstVideoKeyframe)
				}
				if d := s.FirstKeyframeAt.Sub(s.ConnectedAt); !raceEnabled && d > time.Second {
					t.Errorf("viewer %d: first keyframe %v after connecting, want <= 1s", i, d)
				}
			}
			t.Logf("pli %v dropped %v", testutilValue(r.metrics.pli), testutilValue(r.metrics.dropped))
			if got := r.Viewers("s1"); got != n {
				t.Errorf("Viewers() = %d, want %d", got, n)
			}
			if got := testutilValue(r.metrics.direct); int(got) != n {
				t.Errorf("%v viewers keyed for the relay's own SRTP output, want %d", got, n)
			}
		})
	}
}

func TestSecondPublisherIsRejected(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	startPublisher(t, r, "s1")
	p2, err := rtctest.NewPublisher(api(t), light)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	offer, err := p2.PC.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = p2.PC.SetLocalDescription(offer)
	_, _, err = r.Publish(context.Background(), "s1", offer.SDP)
	if !errors.Is(err, ErrPublisherExists) {
		t.Fatalf("second Publish: got %v, want ErrPublisherExists", err)
	}
}

func TestBadOffer(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	noMedia := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
	for _, offer := range []string{"", "garbage", noMedia} {
		if _, _, err := r.Publish(context.Background(), "s1", offer); !errors.Is(err, ErrBadOffer) {
			t.Errorf("Publish(%q): got %v, want ErrBadOffer", offer, err)
		}
		if _, _, err := r.Subscribe(context.Background(), "s1", offer); !errors.Is(err, ErrBadOffer) {
			t.Errorf("Subscribe(%q): got %v, want ErrBadOffer", offer, err)
		}
	}
	if rm := r.existingRoom("s1"); rm != nil {
		t.Errorf("room left behind after bad offers")
	}
}

func TestDeleteEndsSessions(t *testing.T) {
	r, log := newTestRelay(t, Options{})
	_, prid, _ := startPublisher(t, r, "s1")
	v, vrid := startViewer(t, r, "s1")
	receiving(t, v, 5, "media")

	if err := r.Delete("s1", prid, RoleViewer); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete(publisher id as viewer): got %v, want ErrNotFound", err)
	}
	if err := r.Delete("s1", vrid, RoleViewer); err != nil {
		t.Fatalf("Delete viewer: %v", err)
	}
	if got := r.Viewers("s1"); got != 0 {
		t.Errorf("Viewers after delete = %d, want 0", got)
	}
	if err := r.Delete("s1", vrid, RoleViewer); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: got %v, want ErrNotFound", err)
	}
	if err := r.Delete("s1", prid, RolePublisher); err != nil {
		t.Fatalf("Delete publisher: %v", err)
	}
	if r.Live("s1") {
		t.Errorf("Live after publisher delete = true, want false")
	}
	waitFor(t, 2*time.Second, "OnPublisher false", func() bool { return len(log.get()) == 2 })
	if got, want := fmt.Sprint(log.get()), "[s1:true s1:false]"; got != want {
		t.Errorf("OnPublisher calls = %s, want %s", got, want)
	}
	if r.existingRoom("s1") != nil {
		t.Errorf("room kept after everyone left")
	}
}

func TestViewerBeforePublisherAndAcrossReconnect(t *testing.T) {
	r, log := newTestRelay(t, Options{})
	v, _ := startViewer(t, r, "s1")

	_, rid1, stop1 := startPublisher(t, r, "s1")
	receiving(t, v, 20, "media from first publisher")
	stop1()
	_ = r.Delete("s1", rid1, RolePublisher)

	startPublisher(t, r, "s1")
	s := receiving(t, v, 30, "media from second publisher")
	if s.Video.Discontinuities != 0 || s.Audio.Discontinuities != 0 {
		t.Errorf("got %d video and %d audio sequence discontinuities across reconnect, want 0",
			s.Video.Discontinuities, s.Audio.Discontinuities)
	}
	if s.Video.TimestampJumpsBack != 0 || s.Audio.TimestampJumpsBack != 0 {
		t.Errorf("got timestamps jumping back (video %d, audio %d), want none",
			s.Video.TimestampJumpsBack, s.Audio.TimestampJumpsBack)
	}
	if s.Video.Keyframes < 2 {
		t.Errorf("got %d keyframes, want one per publisher", s.Video.Keyframes)
	}
	if got, want := fmt.Sprint(log.get()), "[s1:true s1:false s1:true]"; got != want {
		t.Errorf("OnPublisher calls = %s, want %s", got, want)
	}
}

func TestMutePerKind(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	startPublisher(t, r, "s1")
	v, _ := startViewer(t, r, "s1")
	receiving(t, v, 10, "media")

	yes, no := true, false
	for _, kind := range []string{"video", "audio"} {
		var a, vid *bool
		if kind == "video" {
			vid = &yes
		} else {
			a = &yes
		}
		am, vm := r.SetMute("s1", a, vid)
		if am != (kind == "audio") || vm != (kind == "video") {
			t.Fatalf("SetMute %s: got audio %v video %v", kind, am, vm)
		}
		// Packets already on the wire before the mute come in first: wait until the muted
		// kind has been quiet for 300 ms (15 fps video and 50 pps audio never are), not
		// a fixed 100 ms that a loaded -race run's late reads overran.
		mutedOf := func(s rtctest.ViewerStats) int {
			if kind == "video" {
				return s.Video.Packets
			}
			return s.Audio.Packets
		}
		last, quiet := mutedOf(v.Stats()), time.Now()
		for deadline := time.Now().Add(slow(3 * time.Second)); time.Since(quiet) < 300*time.Millisecond && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if n := mutedOf(v.Stats()); n != last {
				last, quiet = n, time.Now()
			}
		}
		before := v.Stats()
		time.Sleep(400 * time.Millisecond)
		after := v.Stats()
		mutedGot := after.Video.Packets - before.Video.Packets
		otherGot := after.Audio.Packets - before.Audio.Packets
		if kind == "audio" {
			mutedGot, otherGot = otherGot, mutedGot
		}
		if mutedGot != 0 {
			t.Errorf("%s muted: got %d packets, want 0", kind, mutedGot)
		}
		if otherGot == 0 {
			t.Errorf("%s muted: the other kind stopped too", kind)
		}
		if kind == "video" {
			r.SetMute("s1", nil, &no)
		} else {
			r.SetMute("s1", &no, nil)
		}
		s := receiving(t, v, 10, kind+" after unmute")
		if kind == "video" && s.Video.Keyframes <= before.Video.Keyframes {
			t.Errorf("video unmute: got no new keyframe")
		}
		if s.Video.Discontinuities != 0 || s.Audio.Discontinuities != 0 {
			t.Errorf("%s unmute: got %d video, %d audio sequence gaps, want 0",
				kind, s.Video.Discontinuities, s.Audio.Discontinuities)
		}
	}
	if am, vm := r.Mute("s1"); am || vm {
		t.Errorf("Mute() = %v, %v, want false, false", am, vm)
	}
}

func TestEndStreamClosesEverything(t *testing.T) {
	r, log := newTestRelay(t, Options{})
	startPublisher(t, r, "s1")
	v, vrid := startViewer(t, r, "s1")
	receiving(t, v, 5, "media")
	r.EndStream("s1")
	if r.Live("s1") || r.Viewers("s1") != 0 {
		t.Errorf("after EndStream: live %v viewers %d, want false 0", r.Live("s1"), r.Viewers("s1"))
	}
	if err := r.Delete("s1", vrid, RoleViewer); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete after EndStream: got %v, want ErrNotFound", err)
	}
	time.Sleep(100 * time.Millisecond)
	if got, want := fmt.Sprint(log.get()), "[s1:true]"; got != want {
		t.Errorf("OnPublisher calls = %s, want %s (no idle after end)", got, want)
	}
}

func TestBaselineFanOut(t *testing.T) {
	r, _ := newTestRelay(t, Options{Baseline: true})
	startPublisher(t, r, "s1")
	for i := 0; i < 3; i++ {
		v, _ := startViewer(t, r, "s1")
		receiving(t, v, 10, fmt.Sprintf("baseline viewer %d", i))
	}
}

// TestSRTPProfiles: viewers offering only AES-128-GCM, only the AES-CM/HMAC-SHA1-80
// fallback, or pion's default list (AES-256-GCM first) all get media.
func TestSRTPProfiles(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	startPublisher(t, r, "s1")
	for _, tc := range []struct {
		name     string
		profiles []dtls.SRTPProtectionProfile
	}{
		{"AES-128-GCM", []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM}},
		{"SHA1-80", []dtls.SRTPProtectionProfile{dtls.SRTP_AES128_CM_HMAC_SHA1_80}},
		{"pion default", nil},
	} {
		a, err := rtctest.NewAPIWithSRTP(tc.profiles...)
		if err != nil {
			t.Fatal(err)
		}
		v, rid := startViewerWith(t, a, r, "s1")
		receiving(t, v, 10, tc.name+" viewer")
		if !writesDirect(r, "s1", rid) {
			t.Errorf("%s viewer: written through pion's chain, not the relay's own SRTP output", tc.name)
		}
	}
}

// writesDirect tells whether the viewer's packets go out through the relay's own SRTP
// output (direct.go).
func writesDirect(r *Relay, sid, rid string) bool {
	rm := r.existingRoom(sid)
	if rm == nil {
		return false
	}
	rm.mu.Lock()
	v := rm.viewers[rid]
	rm.mu.Unlock()
	return v != nil && v.direct() != nil && v.remote.Load().usable()
}

// TestDirectConnField: this pion keeps a DTLSTransport's DTLS connection where
// directConn looks for it. If an upgrade moves it, viewers fall back to pion's write
// chain (correct, but about a third dearer): this test says so.
func TestDirectConnField(t *testing.T) {
	if dtlsConnField == nil {
		t.Fatal("webrtc.DTLSTransport has no field conn of type *dtls.Conn: viewers' direct SRTP output is off")
	}
}

// TestViewersGetSenderReports: a real pion viewer gets RTCP sender reports for both of
// its tracks, with the SSRC it receives, packets counted and a current NTP time.
func TestViewersGetSenderReports(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	startPublisher(t, r, "s1")
	v, err := rtctest.NewViewer(api(t), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	type got struct {
		kind webrtc.RTPCodecType
		sr   *rtcp.SenderReport
		ssrc uint32
		at   time.Time
	}
	reports := make(chan got, 64)
	v.PC.OnTrack(func(tr *webrtc.TrackRemote, rc *webrtc.RTPReceiver) {
		go func() {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
			}
		}()
		for {
			pkts, _, err := rc.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if sr, ok := p.(*rtcp.SenderReport); ok {
					select {
					case reports <- got{tr.Kind(), sr, uint32(tr.SSRC()), time.Now()}:
					default:
					}
				}
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := v.Connect(ctx, func(ctx context.Context, offer string) (string, error) {
		ans, _, err := r.Subscribe(ctx, "s1", offer)
		return ans, err
	}); err != nil {
		t.Fatal(err)
	}
	seen := map[webrtc.RTPCodecType]bool{}
	deadline := time.After(slow(5 * time.Second))
	for len(seen) < 2 {
		select {
		case g := <-reports:
			if g.sr.SSRC != g.ssrc || g.sr.PacketCount == 0 || g.sr.OctetCount == 0 {
				t.Fatalf("%v sender report %+v, want SSRC %d and packets counted", g.kind, g.sr, g.ssrc)
			}
			ntp := time.Unix(int64(g.sr.NTPTime>>32)-2208988800, 0)
			if d := g.at.Sub(ntp); d < -2*time.Second || d > 2*time.Second {
				t.Fatalf("%v sender report NTP time %v, received at %v", g.kind, ntp, g.at)
			}
			seen[g.kind] = true
		case <-deadline:
			t.Fatalf("sender reports for %v only", seen)
		}
	}
}

// TestViewerGCMOnly: with ViewerGCMOnly a viewer offering AES-128-GCM gets media and
// one offering only AES-CM/HMAC-SHA1-80 cannot connect; publishers keep the fallback.
func TestViewerGCMOnly(t *testing.T) {
	r, _ := newTestRelay(t, Options{ViewerGCMOnly: true})
	startPublisher(t, r, "s1")
	v, _ := startViewer(t, r, "s1")
	receiving(t, v, 10, "default viewer")
	sha1, err := rtctest.NewAPIWithSRTP(dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	if err != nil {
		t.Fatal(err)
	}
	p, err := rtctest.NewPublisher(sha1, light)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Connect(ctx, func(ctx context.Context, offer string) (string, error) {
		ans, _, err := r.Publish(ctx, "s2", offer)
		return ans, err
	}); err != nil {
		t.Fatalf("SHA1-80 publisher: %v", err)
	}
	sv, err := rtctest.NewViewer(sha1, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sv.Close() })
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err = sv.Connect(ctx, func(ctx context.Context, offer string) (string, error) {
		ans, _, err := r.Subscribe(ctx, "s1", offer)
		return ans, err
	})
	if err == nil {
		t.Fatal("a viewer offering only SHA1-80 connected, want no common SRTP profile")
	}
}

func TestPatchTrickle(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	v, rid := startViewer(t, r, "s1")
	ufrag := sdpAttr(v.PC.LocalDescription().SDP, "ice-ufrag")
	frag := "a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:x\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\na=end-of-candidates\r\n"
	if err := r.Patch("s1", rid, RoleViewer, frag); err != nil {
		t.Errorf("trickle Patch: got %v, want nil", err)
	}
	restart := "a=ice-ufrag:other\r\na=ice-pwd:x\r\n"
	if err := r.Patch("s1", rid, RoleViewer, restart); !errors.Is(err, ErrNotSupported) {
		t.Errorf("restart Patch: got %v, want ErrNotSupported", err)
	}
	if err := r.Patch("s1", "nope", RoleViewer, frag); !errors.Is(err, ErrNotFound) {
		t.Errorf("Patch unknown: got %v, want ErrNotFound", err)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	api(t)
	runtime.GC()
	base := runtime.NumGoroutine()
	func() {
		_, _, stop := startPublisher(t, r, "s1")
		var vs []*rtctest.Viewer
		for i := 0; i < 5; i++ {
			v, _ := startViewer(t, r, "s1")
			vs = append(vs, v)
		}
		for _, v := range vs {
			receiving(t, v, 5, "media")
		}
		stop()
		for _, v := range vs {
			_ = v.Close()
		}
		r.EndStream("s1")
	}()
	rtctest.WaitGoroutines(t, base, nil)
}

func TestKeyframeDetection(t *testing.T) {
	tests := []struct {
		name    string
		mime    string
		payload []byte
		want    bool
	}{
		{"vp8 key, plain descriptor", webrtc.MimeTypeVP8, []byte{0x10, 0x30, 0, 0}, true},
		{"vp8 inter", webrtc.MimeTypeVP8, []byte{0x10, 0x31, 0, 0}, false},
		{"vp8 key, 15-bit picture id", webrtc.MimeTypeVP8, []byte{0x90, 0x80, 0x81, 0x02, 0x30}, true},
		{"vp8 key, picture id + tl0 + tid", webrtc.MimeTypeVP8, []byte{0x90, 0xe0, 0x05, 0x01, 0x20, 0x30}, true},
		{"vp8 continuation", webrtc.MimeTypeVP8, []byte{0x80, 0x80, 0x05, 0x30}, false},
		{"vp8 truncated", webrtc.MimeTypeVP8, []byte{0x90}, false},
		{"vp9 key start", webrtc.MimeTypeVP9, []byte{0x88}, true},
		{"vp9 inter", webrtc.MimeTypeVP9, []byte{0xc8}, false},
		{"h264 idr", webrtc.MimeTypeH264, []byte{0x65}, true},
		{"h264 sps", webrtc.MimeTypeH264, []byte{0x67}, true},
		{"h264 stap-a with sps", webrtc.MimeTypeH264, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68}, true},
		{"h264 fu-a idr start", webrtc.MimeTypeH264, []byte{0x7c, 0x85}, true},
		{"h264 fu-a idr middle", webrtc.MimeTypeH264, []byte{0x7c, 0x05}, false},
		{"h264 p slice", webrtc.MimeTypeH264, []byte{0x41}, false},
		{"opus", webrtc.MimeTypeOpus, []byte{0x10, 0x30}, false},
	}
	for _, tt := range tests {
		if got := isKeyframeStart(tt.mime, tt.payload); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func testutilValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

func TestPublisherLossMakesStreamIdle(t *testing.T) {
	r, log := newTestRelay(t, Options{DisconnectedTimeout: time.Second, FailedTimeout: time.Second})
	v, _ := startViewer(t, r, "s1")
	_, _, stop := startPublisher(t, r, "s1")
	receiving(t, v, 5, "media")
	stop() // the publisher goes away without DELETE
	waitFor(t, 10*time.Second, "publisher reported gone", func() bool { return len(log.get()) == 2 })
	if got, want := fmt.Sprint(log.get()), "[s1:true s1:false]"; got != want {
		t.Errorf("OnPublisher calls = %s, want %s", got, want)
	}
	if r.Live("s1") {
		t.Errorf("Live after publisher loss = true, want false")
	}
	startPublisher(t, r, "s1") // and may come back
	receiving(t, v, 5, "media after the publisher came back")
}

// interceptorLoops counts the goroutines running the RTCP loop of pion's NACK
// generator or receiver reports (one each per PeerConnection built with them).
func interceptorLoops() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "GeneratorInterceptor).loop") || strings.Contains(g, "ReceiverInterceptor).loop") {
			n++
		}
	}
	return n
}

// TestViewerConnectionsRunNoInterceptorLoops: the viewers' API has no interceptor, so a
// viewer's PeerConnection starts none of the RTCP loops the publishers' API runs per
// connection (a 100 ms and a 1 s ticker each). It failed before: the viewers shared the
// publishers' API, two loops per viewer.
func TestViewerConnectionsRunNoInterceptorLoops(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	count := func(a *webrtc.API) int {
		before := interceptorLoops()
		for i := 0; i < 3; i++ {
			pc, err := a.NewPeerConnection(webrtc.Configuration{})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
		}
		var got int
		waitFor(t, 2*time.Second, "loops started", func() bool {
			got = interceptorLoops() - before
			return got >= 6 || a == r.viewAPI
		})
		return got
	}
	if got := count(r.api); got != 6 {
		t.Fatalf("publishers' API: got %d interceptor loops for 3 connections, want 6", got)
	}
	if got := count(r.viewAPI); got != 0 {
		t.Fatalf("viewers' API: got %d interceptor loops for 3 connections, want 0", got)
	}
}

// writerGoroutines counts the goroutines writing viewers' packets: the writer pool's,
// or (before it) one per viewer.
func writerGoroutines() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "stream.(*writer).run") || strings.Contains(g, "stream.(*viewer).writeLoop") {
			n++
		}
	}
	return n
}

// TestViewersShareTheWriters: the viewers' packets are written by a pool of one writer
// per CPU, not by a goroutine per viewer, and every viewer still gets its media. It
// failed before: one writer goroutine per viewer (12 here).
func TestViewersShareTheWriters(t *testing.T) {
	r, _ := newTestRelay(t, Options{})
	startPublisher(t, r, "s1")
	const n = 12
	var vs []*rtctest.Viewer
	for i := 0; i < n; i++ {
		v, _ := startViewer(t, r, "s1")
		vs = append(vs, v)
	}
	for i, v := range vs {
		receiving(t, v, 10, fmt.Sprintf("media on viewer %d", i))
	}
	want := min(runtime.GOMAXPROCS(0), maxWriters)
	if got := writerGoroutines(); got != want {
		t.Errorf("writer goroutines with %d viewers: got %d, want %d (one per CPU)", n, got, want)
	}
}
