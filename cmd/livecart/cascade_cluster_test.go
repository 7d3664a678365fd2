package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/stream/rtctest"
)

// Media across nodes (cascade): a viewer on one node gets the media of a publisher on
// another, pulled over WHEP from the publisher's node. Two real nodes on one Redis,
// real pion peers on loopback.

// session is a WHIP or WHEP session opened over HTTP: its absolute Location.
type session struct{ location string }

// signalAt posts an SDP offer to base+path and keeps the session's Location in s (when
// not nil).
func signalAt(base, path, token string, s *session) rtctest.Signal {
	return func(ctx context.Context, offer string) (string, error) {
		req, _ := http.NewRequestWithContext(ctx, "POST", base+path, strings.NewReader(offer))
		req.Header.Set("Content-Type", "application/sdp")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusCreated {
			return "", fmt.Errorf("POST %s: %d %s", base+path, resp.StatusCode, body)
		}
		if s != nil {
			s.location = base + resp.Header.Get("Location")
		}
		return string(body), nil
	}
}

// end deletes the session (200).
func (s *session) end(t *testing.T, token string) {
	t.Helper()
	req, _ := http.NewRequest("DELETE", s.location, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE %s: got %d, want 200", s.location, resp.StatusCode)
	}
}

// publishAt connects a publisher to base; stop ends it (DELETE, then the peer).
func (c *muteCluster) publishAt(t *testing.T, base string) (stop func()) {
	t.Helper()
	pub, err := rtctest.NewPublisher(c.api, rtctest.PublisherOptions{Bitrate: 300_000, FPS: 15, KeyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var s session
	if err := pub.Connect(ctx, signalAt(base, "/whip/"+c.sid, c.creator, &s)); err != nil {
		pub.Close()
		t.Fatalf("publish on %s: %v", base, err)
	}
	runCtx, cancelRun := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pub.Run(runCtx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancelRun()
		<-done
		s.end(t, c.creator)
		pub.Close()
	}
	t.Cleanup(func() {
		if !stopped {
			stopped = true
			cancelRun()
			<-done
			pub.Close()
		}
	})
	return stop
}

// tryPublishAt connects a publisher to base's WHIP and returns the outcome (the
// publisher is closed when the test ends).
func (c *muteCluster) tryPublishAt(t *testing.T, base string) error {
	t.Helper()
	_, err := tryPublish(t, c.api, base, c.sid, c.creator)
	return err
}

// watchAt connects a viewer to base and returns it with its session.
func (c *muteCluster) watchAt(t *testing.T, base string) (*rtctest.Viewer, *session) {
	t.Helper()
	v, err := rtctest.NewViewer(c.api, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := &session{}
	if err := v.Connect(ctx, signalAt(base, "/whep/"+c.sid, "", s)); err != nil {
		t.Fatalf("watch on %s: %v", base, err)
	}
	return v, s
}

// metric reads one unlabelled value from base's /metrics (-1 if absent).
func metric(t *testing.T, base, name string) float64 {
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
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// waitMetrics polls until every named metric of base has its wanted value (10 s).
func waitMetrics(t *testing.T, base string, want map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]float64{}
		ok := true
		for name, w := range want {
			got[name] = metric(t, base, name)
			ok = ok && got[name] == w
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics of %s: got %v, want %v", base, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// firstKeyframe: the viewer's video started with a keyframe; outside -race within
// 1 s of connecting, or of the publisher's arrival when the viewer came first.
func firstKeyframe(t *testing.T, v *rtctest.Viewer, what string, published time.Time) {
	t.Helper()
	s := v.Stats()
	if !s.FirstVideoKeyframe || s.Video.Keyframes == 0 {
		t.Errorf("%s: first video packet a keyframe %v, keyframes %d; want a keyframe first", what, s.FirstVideoKeyframe, s.Video.Keyframes)
	}
	from := s.ConnectedAt
	if published.After(from) {
		from = published
	}
	d := s.FirstKeyframeAt.Sub(from)
	t.Logf("%s: first keyframe %v after connecting or the publisher's arrival", what, d)
	if !raceEnabled && d > time.Second {
		t.Errorf("%s: first keyframe %v after connecting or the publisher's arrival, want <= 1 s", what, d)
	}
}

func gotMedia(s rtctest.ViewerStats) bool { return s.Audio.Packets > 20 && s.Video.Packets > 20 }

// TestCascadeViewerOnOtherNode: publisher on A, viewers on B get audio and video
// starting with a keyframe, through one upstream; mutes set on either node reach them
// and unmute resumes from a keyframe.
func TestCascadeViewerOnOtherNode(t *testing.T) {
	c := newMuteCluster(t)
	c.publishAt(t, c.a)
	v, _ := c.watchAt(t, c.b)
	waitStats(t, v, "viewer on B gets audio and video", gotMedia)
	firstKeyframe(t, v, "viewer on B", time.Time{})
	v2, _ := c.watchAt(t, c.b)
	waitStats(t, v2, "second viewer on B", gotMedia)
	firstKeyframe(t, v2, "second viewer on B", time.Time{})
	waitMetrics(t, c.b, map[string]float64{"livecart_media_upstreams": 1, "livecart_media_viewers": 2})
	waitMetrics(t, c.a, map[string]float64{"livecart_media_publishers": 1, "livecart_media_viewers": 1})

	for _, via := range []string{c.a, c.b} {
		mutedAt := time.Now()
		c.setMute(t, via, map[string]bool{"video_muted": true}, false, true)
		muted := videoStopped(t, v, mutedAt)
		c.setMute(t, via, map[string]bool{"video_muted": false}, false, false)
		s := waitStats(t, v, "video on B after unmute", func(s rtctest.ViewerStats) bool {
			return s.Video.Packets > muted.Video.Packets+10 && s.Video.Keyframes > muted.Video.Keyframes
		})
		if s.Video.Discontinuities != 0 || s.Audio.Discontinuities != 0 {
			t.Errorf("after mute and unmute via %s: %d video, %d audio discontinuities, want 0", via, s.Video.Discontinuities, s.Audio.Discontinuities)
		}
	}
}

// TestCascadeViewerBeforePublisher: a viewer on B waiting before any publisher gets
// media once one publishes on A.
func TestCascadeViewerBeforePublisher(t *testing.T) {
	c := newMuteCluster(t)
	v, _ := c.watchAt(t, c.b)
	time.Sleep(300 * time.Millisecond)
	c.publishAt(t, c.a)
	published := time.Now()
	waitStats(t, v, "viewer on B after the publisher arrived on A", gotMedia)
	firstKeyframe(t, v, "viewer on B", published)
}

// TestCascadePublisherMovesNodes: the publisher leaves A and comes back on B; the
// viewer on A keeps getting media with continuous sequence numbers, and the stream
// stays live on both nodes' answers.
func TestCascadePublisherMovesNodes(t *testing.T) {
	c := newMuteCluster(t)
	v, _ := c.watchAt(t, c.a)
	stop := c.publishAt(t, c.a)
	first := waitStats(t, v, "viewer on A from the publisher on A", gotMedia)
	stop()
	c.publishAt(t, c.b)
	s := waitStats(t, v, "viewer on A from the publisher on B", func(s rtctest.ViewerStats) bool {
		return s.Video.Packets > first.Video.Packets+30 && s.Audio.Packets > first.Audio.Packets+30 &&
			s.Video.Keyframes > first.Video.Keyframes
	})
	if s.Video.Discontinuities != 0 || s.Audio.Discontinuities != 0 {
		t.Errorf("across the move: %d video, %d audio discontinuities, want 0", s.Video.Discontinuities, s.Audio.Discontinuities)
	}
	if s.Video.TimestampJumpsBack != 0 || s.Audio.TimestampJumpsBack != 0 {
		t.Errorf("across the move: timestamps jumped back (video %d, audio %d), want never", s.Video.TimestampJumpsBack, s.Audio.TimestampJumpsBack)
	}
	waitMetrics(t, c.a, map[string]float64{"livecart_media_upstreams": 1, "livecart_media_publishers": 0})
	var st struct{ Status string }
	call(t, "GET", c.a+"/api/streams/"+c.sid, "", nil, 200, &st)
	if st.Status != "live" {
		t.Errorf("stream status after the move: got %q, want live", st.Status)
	}
}

// TestCascadeUpstreamClosesAfterLastViewer: when the last viewer on B leaves, B closes
// its upstream (after a short grace) and A's session for it ends; no goroutine stays.
func TestCascadeUpstreamClosesAfterLastViewer(t *testing.T) {
	c := newMuteCluster(t)
	c.publishAt(t, c.a)
	waitMetrics(t, c.a, map[string]float64{"livecart_media_publishers": 1})
	time.Sleep(300 * time.Millisecond) // the publisher's tracks are up
	http.DefaultClient.CloseIdleConnections()
	runtime.GC()
	base := runtime.NumGoroutine()

	v, s := c.watchAt(t, c.b)
	waitStats(t, v, "viewer on B", gotMedia)
	waitMetrics(t, c.b, map[string]float64{"livecart_media_upstreams": 1})
	s.end(t, "")
	v.Close()
	waitMetrics(t, c.b, map[string]float64{"livecart_media_upstreams": 0, "livecart_media_viewers": 0})
	waitMetrics(t, c.a, map[string]float64{"livecart_media_viewers": 0, "livecart_media_publishers": 1})

	rtctest.WaitGoroutines(t, base, http.DefaultClient.CloseIdleConnections)
}

// TestCascadeStreamEnd: ending the stream (through either node) closes the publisher
// on A, the viewer on B and B's upstream.
func TestCascadeStreamEnd(t *testing.T) {
	for _, name := range []string{"via A", "via B"} {
		t.Run(name, func(t *testing.T) {
			c := newMuteCluster(t)
			c.publishAt(t, c.a)
			v, _ := c.watchAt(t, c.b)
			waitStats(t, v, "viewer on B", gotMedia)
			via := c.a
			if name == "via B" {
				via = c.b
			}
			call(t, "POST", via+"/api/streams/"+c.sid+"/end", c.mod, nil, 200, nil)
			waitMetrics(t, c.b, map[string]float64{"livecart_media_upstreams": 0, "livecart_media_viewers": 0})
			waitMetrics(t, c.a, map[string]float64{"livecart_media_publishers": 0, "livecart_media_viewers": 0})
			before := v.Stats()
			time.Sleep(300 * time.Millisecond)
			if after := v.Stats(); after.Audio.Packets != before.Audio.Packets || after.Video.Packets != before.Video.Packets {
				t.Errorf("viewer on B after the end: got %d audio, %d video more packets, want none",
					after.Audio.Packets-before.Audio.Packets, after.Video.Packets-before.Video.Packets)
			}
		})
	}
}

// TestCascadeSecondPublisherOnOtherNode: while the publisher is on A, WHIP on B is 409
// conflict, as on one node; once it has left A, B takes it.
func TestCascadeSecondPublisherOnOtherNode(t *testing.T) {
	c := newMuteCluster(t)
	stop := c.publishAt(t, c.a)
	waitMetrics(t, c.a, map[string]float64{"livecart_media_publishers": 1})
	err := c.tryPublishAt(t, c.b)
	if err == nil || !strings.Contains(err.Error(), "409") || !strings.Contains(err.Error(), `"conflict"`) {
		t.Fatalf("WHIP on B while A has the publisher: got %v, want 409 conflict", err)
	}
	waitMetrics(t, c.b, map[string]float64{"livecart_media_publishers": 0})
	stop()
	v, _ := c.watchAt(t, c.a)
	c.publishAt(t, c.b)
	waitStats(t, v, "viewer on A from the publisher now on B", gotMedia)
}

// TestCascadeClaimOfAGoneNode: a claim on the stream by a node that no longer renews it
// (crashed) blocks WHIP elsewhere only while it is fresh (5 s); a stale one is
// overridden, and viewers pull from the new publisher's node.
func TestCascadeClaimOfAGoneNode(t *testing.T) {
	c := newMuteCluster(t)
	st, err := cart.OpenRedis(context.Background(), "redis://127.0.0.1:6379/0", cart.RedisOptions{Prefix: c.prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gone := cart.MediaOrigin{NodeID: "node-gone", URL: "http://127.0.0.1:9", Session: "dead"}
	if err := st.ClaimMediaOrigin(context.Background(), c.sid, gone, time.Now(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	v, _ := c.watchAt(t, c.a)
	err = c.tryPublishAt(t, c.b)
	if err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("WHIP on B while the gone node's claim is fresh: got %v, want 409 conflict", err)
	}
	// The claim as it is 6 s later, never renewed.
	if _, err := st.ClearMediaOrigin(context.Background(), c.sid, "dead"); err != nil {
		t.Fatal(err)
	}
	claimStale(t, st, c.prefix, c.sid, gone)
	c.publishAt(t, c.b)
	waitStats(t, v, "viewer on A from the publisher on B", gotMedia)
	o, err := st.MediaOrigin(context.Background(), c.sid, time.Now())
	if err != nil || o.NodeID != "node-b" || time.Since(o.Seen) > 2*time.Second {
		t.Errorf("origin after B's publisher arrived: got %+v %v, want node-b, seen within 2 s (renewed every second)", o, err)
	}
}
