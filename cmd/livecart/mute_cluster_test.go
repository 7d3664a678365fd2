package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pion/webrtc/v3"

	"github.com/livecart/livecart/stream/rtctest"
	"github.com/livecart/livecart/web/auth"
)

// muteCluster is two nodes on one Redis and a stream created on A.
type muteCluster struct {
	a, b, sid, creator, mod string
	prefix                  string // the nodes' Redis key prefix
	api                     *webrtc.API
}

func newMuteCluster(t *testing.T) *muteCluster {
	t.Helper()
	prefix := fmt.Sprintf("lc-mute-%s", uuid.NewString()[:8])
	cleanupPrefix(t, prefix)
	c := &muteCluster{a: startNode(t, "node-a", prefix), b: startNode(t, "node-b", prefix), prefix: prefix,
		creator: mint(t, auth.RoleCreator, "alice"), mod: mint(t, auth.RoleModerator, "mod")}
	var st struct{ ID string }
	call(t, "POST", c.a+"/api/streams", c.creator, map[string]string{"title": "mute"}, 201, &st)
	c.sid = st.ID
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	c.api = api
	return c
}

// publish connects a publisher to base (keyframes only on request) and sends media
// until the test ends.
func (c *muteCluster) publish(t *testing.T, base string) {
	t.Helper()
	publishSession(t, c.api, base, c.sid, c.creator)
}

// watch connects a viewer to base.
func (c *muteCluster) watch(t *testing.T, base string) *rtctest.Viewer {
	t.Helper()
	v, _ := c.watchAt(t, base)
	return v
}

// setMute posts a mute change to base and checks the answer.
func (c *muteCluster) setMute(t *testing.T, base string, body map[string]bool, wantAudio, wantVideo bool) {
	t.Helper()
	var got struct {
		AudioMuted bool `json:"audio_muted"`
		VideoMuted bool `json:"video_muted"`
	}
	call(t, "POST", base+"/api/streams/"+c.sid+"/media", c.mod, body, 200, &got)
	if got.AudioMuted != wantAudio || got.VideoMuted != wantVideo {
		t.Fatalf("POST media %v on %s: got %+v, want audio %v video %v", body, base, got, wantAudio, wantVideo)
	}
}

// snapshotMedia is the media state of a fresh websocket snapshot on base.
func (c *muteCluster) snapshotMedia(t *testing.T, base string) (audio, video bool) {
	t.Helper()
	ws := dialWS(t, base, c.sid, "")
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	var snap struct {
		Type  string
		Media struct {
			AudioMuted bool `json:"audio_muted"`
			VideoMuted bool `json:"video_muted"`
		}
	}
	if err := ws.ReadJSON(&snap); err != nil || snap.Type != "snapshot" {
		t.Fatalf("first frame on %s: got %q %v, want snapshot", base, snap.Type, err)
	}
	return snap.Media.AudioMuted, snap.Media.VideoMuted
}

// waitStats polls the viewer until ok holds (5 s at most).
func waitStats(t *testing.T, v *rtctest.Viewer, what string, ok func(rtctest.ViewerStats) bool) rtctest.ViewerStats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := v.Stats()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got audio %d video %d packets, keyframes %d", what, s.Audio.Packets, s.Video.Packets, s.Video.Keyframes)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// videoStopped checks that, 1 s after a mute, no video arrives any more while audio
// still does.
func videoStopped(t *testing.T, v *rtctest.Viewer, mutedAt time.Time) rtctest.ViewerStats {
	t.Helper()
	time.Sleep(time.Until(mutedAt.Add(time.Second)))
	before := v.Stats()
	time.Sleep(500 * time.Millisecond)
	after := v.Stats()
	if after.Video.Packets != before.Video.Packets {
		t.Fatalf("video 1 s after the mute: got %d more packets in 0.5 s, want none", after.Video.Packets-before.Video.Packets)
	}
	if after.Audio.Packets <= before.Audio.Packets {
		t.Fatalf("audio while video is muted: got %d packets, want more than %d", after.Audio.Packets, before.Audio.Packets)
	}
	return after
}

// TestMediaMuteAcrossNodes: the publisher and its viewer are on node A; mutes posted
// to node B reach A's relay (video stops within 1 s, audio goes on; unmute brings
// video back from a keyframe) and a snapshot on B shows the state.
func TestMediaMuteAcrossNodes(t *testing.T) {
	c := newMuteCluster(t)
	c.publish(t, c.a)
	v := c.watch(t, c.a)
	waitStats(t, v, "viewer on A gets audio and video", func(s rtctest.ViewerStats) bool {
		return s.Audio.Packets > 10 && s.Video.Packets > 10
	})

	mutedAt := time.Now()
	c.setMute(t, c.b, map[string]bool{"video_muted": true}, false, true)
	muted := videoStopped(t, v, mutedAt)
	if a, vid := c.snapshotMedia(t, c.b); a || !vid {
		t.Fatalf("snapshot on B after muting video: got audio %v video %v, want video muted only", a, vid)
	}
	if a, vid := c.snapshotMedia(t, c.a); a || !vid {
		t.Fatalf("snapshot on A after muting video on B: got audio %v video %v, want video muted only", a, vid)
	}

	c.setMute(t, c.b, map[string]bool{"video_muted": false}, false, false)
	waitStats(t, v, "video after unmute on B", func(s rtctest.ViewerStats) bool {
		return s.Video.Packets > muted.Video.Packets+10 && s.Video.Keyframes > muted.Video.Keyframes
	})
	if a, vid := c.snapshotMedia(t, c.b); a || vid {
		t.Fatalf("snapshot on B after unmute: got audio %v video %v, want neither muted", a, vid)
	}
}

// TestMediaMuteBeforePublisher: video muted through B before any publisher stays
// muted once the publisher arrives on A.
func TestMediaMuteBeforePublisher(t *testing.T) {
	c := newMuteCluster(t)
	c.setMute(t, c.b, map[string]bool{"video_muted": true}, false, true)
	v := c.watch(t, c.a)
	c.publish(t, c.a)
	s := waitStats(t, v, "audio on A", func(s rtctest.ViewerStats) bool { return s.Audio.Packets > 50 })
	if s.Video.Packets != 0 {
		t.Fatalf("video muted before the publisher arrived: got %d packets, want none", s.Video.Packets)
	}
	c.setMute(t, c.b, map[string]bool{"video_muted": false}, false, false)
	waitStats(t, v, "video after unmute on B", func(s rtctest.ViewerStats) bool {
		return s.Video.Packets > 10 && s.Video.Keyframes > 0
	})
}
