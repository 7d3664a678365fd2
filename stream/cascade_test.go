package stream

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/livecart/livecart/stream/rtctest"
)

// directory is the shared state of a test cluster of relays: which relay publishes
// each stream (what the web layer keeps in the store) and which streams ended. Each
// relay sees it through a nodeView, its Upstream, which calls the origin relay's
// Subscribe and Delete directly (the web layer does the same over HTTP).
type directory struct {
	mu     sync.Mutex
	origin map[string]string // stream → relay name
	ended  map[string]bool
	stale  map[string]bool // streams whose origin's claim went stale
	relays map[string]*Relay
	subs   map[string]int // open upstream sessions by origin
	opened map[string]int // upstream sessions ever opened by origin
	// spoil is how many answers of each origin come back unreadable, once the
	// signalling's context has run out (a slow origin, a garbled reply).
	spoil map[string]int
	// late delays the next answer of an origin by this much after the origin made its
	// session (a slow link); a caller whose context ends first gets its error and no
	// answer, as over HTTP.
	late map[string]time.Duration
	// signalTimeout is the relays' UpstreamTimeout.
	signalTimeout time.Duration
	// loseDeletes makes Unsubscribe fail without ending the session (its DELETE lost
	// on the way: the origin learns of the puller's leaving only from the media path).
	loseDeletes bool
}

type nodeView struct {
	d    *directory
	self string
}

func (n nodeView) Origin(_ context.Context, sid string) (string, error) {
	n.d.mu.Lock()
	defer n.d.mu.Unlock()
	if n.d.ended[sid] {
		return "", ErrEnded
	}
	if o := n.d.origin[sid]; o != n.self {
		if n.d.stale[sid] {
			return o, ErrOriginStale
		}
		return o, nil
	}
	return "", nil
}

func (n nodeView) Subscribe(ctx context.Context, origin, sid, offer string) (string, string, error) {
	n.d.mu.Lock()
	r := n.d.relays[origin]
	n.d.mu.Unlock()
	answer, rid, err := r.Subscribe(ctx, sid, offer)
	if err != nil {
		return "", "", err
	}
	n.d.mu.Lock()
	n.d.subs[origin]++
	n.d.opened[origin]++
	spoil := n.d.spoil[origin] > 0
	if spoil {
		n.d.spoil[origin]--
	}
	late := n.d.late[origin]
	delete(n.d.late, origin)
	n.d.mu.Unlock()
	if late > 0 {
		select {
		case <-time.After(late):
		case <-ctx.Done():
			return "", "", ctx.Err()
		}
	}
	if spoil { // once the puller's signalling deadline has passed
		time.Sleep(n.d.signalTimeout)
		answer = "v=0\r\ngarbled"
	}
	return answer, origin + "/" + sid + "/" + rid, nil
}

// Unsubscribe ends the session unless ctx has ended, as a DELETE over HTTP would.
func (n nodeView) Unsubscribe(ctx context.Context, session string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	parts := strings.Split(session, "/")
	n.d.mu.Lock()
	if n.d.loseDeletes {
		n.d.mu.Unlock()
		return errors.New("DELETE lost")
	}
	r := n.d.relays[parts[0]]
	n.d.subs[parts[0]]--
	n.d.mu.Unlock()
	return r.Delete(parts[1], parts[2], RoleViewer)
}

func (d *directory) openSessions(origin string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.subs[origin]
}

// newCluster starts relays named a, b, ... that cascade through one directory; each
// records itself as a stream's origin when its publisher arrives and forgets it when
// the publisher leaves, as the web layer does.
func newCluster(t *testing.T, names ...string) (*directory, map[string]*Relay) {
	t.Helper()
	return newClusterWith(t, Options{}, names...)
}

// newClusterWith is newCluster with the relays' UpstreamTimeout taken from opts.
func newClusterWith(t *testing.T, opts Options, names ...string) (*directory, map[string]*Relay) {
	t.Helper()
	d := &directory{origin: map[string]string{}, ended: map[string]bool{}, relays: map[string]*Relay{}, subs: map[string]int{},
		stale: map[string]bool{}, opened: map[string]int{}, spoil: map[string]int{}, late: map[string]time.Duration{},
		signalTimeout: opts.UpstreamTimeout}
	if d.signalTimeout <= 0 {
		d.signalTimeout = defaultUpstreamTimeout
	}
	for _, name := range names {
		r, err := New(Options{
			ListenIP: "127.0.0.1", Upstream: nodeView{d: d, self: name},
			PullInterval: 50 * time.Millisecond, UpstreamGrace: 300 * time.Millisecond,
			UpstreamTimeout: opts.UpstreamTimeout,
			OnPublisher: func(sid, _ string, live bool) {
				d.mu.Lock()
				defer d.mu.Unlock()
				if live {
					d.origin[sid] = name
				} else if d.origin[sid] == name {
					delete(d.origin, sid)
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		d.relays[name] = r
	}
	return d, d.relays
}

// firstKeyframe checks the viewer's video began with a keyframe (within 1 s of
// connecting, outside -race).
func firstKeyframe(t *testing.T, v *rtctest.Viewer, what string) {
	t.Helper()
	s := v.Stats()
	if s.Video.Keyframes == 0 || !s.FirstVideoKeyframe {
		t.Errorf("%s: got %d keyframes, first video packet a keyframe: %v; want a keyframe first",
			what, s.Video.Keyframes, s.FirstVideoKeyframe)
	}
	if d := s.FirstKeyframeAt.Sub(s.ConnectedAt); !raceEnabled && d > time.Second {
		t.Errorf("%s: first keyframe %v after connecting, want <= 1s", what, d)
	}
}

func TestCascadeViewerOnOtherNode(t *testing.T) {
	d, r := newCluster(t, "a", "b")
	startPublisher(t, r["a"], "s1")
	v, _ := startViewer(t, r["b"], "s1")
	receiving(t, v, 20, "media on b from a's publisher")
	firstKeyframe(t, v, "viewer on b")
	if !r["b"].Pulling("s1") || r["b"].Live("s1") {
		t.Errorf("b: Pulling %v Live %v, want true false", r["b"].Pulling("s1"), r["b"].Live("s1"))
	}
	if got := d.openSessions("a"); got != 1 {
		t.Errorf("upstream sessions on a: got %d, want 1", got)
	}
	// Viewers on b share the one upstream.
	v2, _ := startViewer(t, r["b"], "s1")
	receiving(t, v2, 20, "second viewer on b")
	firstKeyframe(t, v2, "second viewer on b")
	if got := d.openSessions("a"); got != 1 || r["a"].Viewers("s1") != 1 {
		t.Errorf("after a second viewer on b: %d sessions, %d viewers on a, want 1 and 1", got, r["a"].Viewers("s1"))
	}
}

func TestCascadeViewerBeforePublisher(t *testing.T) {
	_, r := newCluster(t, "a", "b")
	v, _ := startViewer(t, r["b"], "s1")
	time.Sleep(200 * time.Millisecond) // a few polls find no origin
	startPublisher(t, r["a"], "s1")
	receiving(t, v, 20, "media on b once a publisher is on a")
	firstKeyframe(t, v, "viewer on b")
}

// TestCascadePublisherMoves: the viewer is on a; the publisher leaves a and comes back
// on b: a pulls from b and its viewer's output stays continuous. Then it comes back to
// a, and a stops pulling.
func TestCascadePublisherMoves(t *testing.T) {
	d, r := newCluster(t, "a", "b")
	v, _ := startViewer(t, r["a"], "s1")
	_, rid, stop := startPublisher(t, r["a"], "s1")
	receiving(t, v, 20, "media from the publisher on a")
	stop()
	_ = r["a"].Delete("s1", rid, RolePublisher)

	_, rid, stop = startPublisher(t, r["b"], "s1")
	s := receiving(t, v, 30, "media on a from the publisher on b")
	if !r["a"].Pulling("s1") {
		t.Errorf("a: Pulling false, want true")
	}
	if s.Video.Discontinuities != 0 || s.Audio.Discontinuities != 0 {
		t.Errorf("got %d video and %d audio sequence discontinuities across the move, want 0",
			s.Video.Discontinuities, s.Audio.Discontinuities)
	}
	if s.Video.TimestampJumpsBack != 0 || s.Audio.TimestampJumpsBack != 0 {
		t.Errorf("got timestamps jumping back (video %d, audio %d), want none", s.Video.TimestampJumpsBack, s.Audio.TimestampJumpsBack)
	}
	if s.Video.Keyframes < 2 {
		t.Errorf("got %d keyframes, want one per publisher", s.Video.Keyframes)
	}

	stop()
	_ = r["b"].Delete("s1", rid, RolePublisher)
	startPublisher(t, r["a"], "s1")
	s = receiving(t, v, 30, "media from the publisher back on a")
	waitFor(t, slow(5*time.Second), "a stops pulling from b", func() bool {
		return !r["a"].Pulling("s1") && d.openSessions("b") == 0 && r["b"].Viewers("s1") == 0
	})
	if s.Video.Discontinuities != 0 || s.Audio.Discontinuities != 0 {
		t.Errorf("got %d video and %d audio sequence discontinuities after moving back, want 0",
			s.Video.Discontinuities, s.Audio.Discontinuities)
	}
}

// TestCascadeUpstreamClosesAfterLastViewer: the upstream outlives the last viewer by
// the grace, then closes; the origin's session ends; no goroutine is left.
func TestCascadeUpstreamClosesAfterLastViewer(t *testing.T) {
	d, r := newCluster(t, "a", "b")
	api(t)
	startPublisher(t, r["a"], "s1")
	waitFor(t, slow(5*time.Second), "the publisher's tracks on a", func() bool {
		rm := r["a"].existingRoom("s1")
		return rm != nil && rm.gen[kindAudio].Load() > 0 && rm.gen[kindVideo].Load() > 0
	})
	time.Sleep(100 * time.Millisecond)
	runtime.GC()
	base := runtime.NumGoroutine()
	func() {
		v, rid := startViewer(t, r["b"], "s1")
		receiving(t, v, 10, "media on b")
		if err := r["b"].Delete("s1", rid, RoleViewer); err != nil {
			t.Fatal(err)
		}
		_ = v.Close()
		time.Sleep(100 * time.Millisecond)
		if !r["b"].Pulling("s1") {
			t.Errorf("b right after its last viewer left: Pulling false, want true (grace)")
		}
	}()
	waitFor(t, slow(5*time.Second), "upstream closed", func() bool {
		return !r["b"].Pulling("s1") && d.openSessions("a") == 0 && r["a"].Viewers("s1") == 0 &&
			r["b"].existingRoom("s1") == nil
	})
	if got := gaugeValue(r["b"].metrics.upstreams); got != 0 {
		t.Errorf("upstreams gauge: got %v, want 0", got)
	}
	rtctest.WaitGoroutines(t, base, nil)
}

// TestCascadeViewerReturnsWithinGrace: a viewer arriving within the grace reuses the
// open upstream.
func TestCascadeViewerReturnsWithinGrace(t *testing.T) {
	d, r := newCluster(t, "a", "b")
	startPublisher(t, r["a"], "s1")
	v, rid := startViewer(t, r["b"], "s1")
	receiving(t, v, 10, "media on b")
	_ = r["b"].Delete("s1", rid, RoleViewer)
	v2, _ := startViewer(t, r["b"], "s1")
	receiving(t, v2, 10, "media on b for the returning viewer")
	d.mu.Lock()
	subs := d.subs["a"]
	d.mu.Unlock()
	if subs != 1 {
		t.Errorf("upstream sessions on a: got %d, want 1 (reused)", subs)
	}
}

// TestCascadeStreamEnd: once the stream is ended, the pulling node ends its room: its
// viewers and the upstream close.
func TestCascadeStreamEnd(t *testing.T) {
	d, r := newCluster(t, "a", "b")
	startPublisher(t, r["a"], "s1")
	v, rid := startViewer(t, r["b"], "s1")
	receiving(t, v, 10, "media on b")
	d.mu.Lock()
	d.ended["s1"] = true
	d.mu.Unlock()
	r["a"].EndStream("s1")
	waitFor(t, slow(5*time.Second), "b's room ended", func() bool {
		return r["b"].existingRoom("s1") == nil && !r["b"].Pulling("s1") && r["b"].Viewers("s1") == 0
	})
	if err := r["b"].Delete("s1", rid, RoleViewer); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete of b's viewer after the end: got %v, want ErrNotFound", err)
	}
	waitFor(t, slow(5*time.Second), "upstream gauge 0", func() bool { return gaugeValue(r["b"].metrics.upstreams) == 0 })
}

// TestCascadeLocalPublisherWins: a publisher arriving on the pulling node replaces the
// upstream at once.
func TestCascadeLocalPublisherWins(t *testing.T) {
	d, r := newCluster(t, "a", "b")
	startPublisher(t, r["a"], "s1")
	v, _ := startViewer(t, r["b"], "s1")
	receiving(t, v, 10, "media on b from a")
	startPublisher(t, r["b"], "s1")
	waitFor(t, slow(5*time.Second), "b stops pulling", func() bool {
		return r["b"].Live("s1") && !r["b"].Pulling("s1") && d.openSessions("a") == 0
	})
	s := receiving(t, v, 20, "media on b from its own publisher")
	if s.Video.Discontinuities != 0 || s.Audio.Discontinuities != 0 {
		t.Errorf("got %d video and %d audio discontinuities, want 0", s.Video.Discontinuities, s.Audio.Discontinuities)
	}
}

// TestCascadeStaleOrigin: an origin whose claim went stale gets no new upstream, but
// one connected to it is kept (its media shows the node is up: the store only took no
// renewals for a while).
func TestCascadeStaleOrigin(t *testing.T) {
	d, r := newCluster(t, "a", "b")
	setStale := func(stale bool) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.stale["s1"] = stale
	}
	opened := func() int {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.opened["a"]
	}
	startPublisher(t, r["a"], "s1")
	setStale(true)
	v, _ := startViewer(t, r["b"], "s1")
	time.Sleep(300 * time.Millisecond) // a few polls
	if r["b"].Pulling("s1") || opened() != 0 {
		t.Fatalf("b with a stale origin: Pulling %v, %d sessions opened on a; want false, 0", r["b"].Pulling("s1"), opened())
	}
	setStale(false)
	receiving(t, v, 20, "media on b once the origin is fresh")
	setStale(true)
	time.Sleep(300 * time.Millisecond)
	receiving(t, v, 20, "media on b while the origin's claim is stale")
	if !r["b"].Pulling("s1") || opened() != 1 || d.openSessions("a") != 1 {
		t.Errorf("b with its upstream connected to a stale origin: Pulling %v, %d sessions opened, %d open on a; want true, 1, 1",
			r["b"].Pulling("s1"), opened(), d.openSessions("a"))
	}
}

// TestCascadeUnreadableAnswerEndsOriginSession: the origin made its session but the
// answer b got was unreadable, and came when b's signalling context had run out. b
// still ends that session on the origin (it used to DELETE on the spent context: the
// session stayed until its ICE timeouts), and pulls on its next try.
func TestCascadeUnreadableAnswerEndsOriginSession(t *testing.T) {
	t.Parallel() // waits out timeouts: see TestMain
	d, r := newCluster(t, "a", "b")
	d.mu.Lock()
	d.spoil["a"] = 1
	d.mu.Unlock()
	startPublisher(t, r["a"], "s1")
	v, _ := startViewer(t, r["b"], "s1")
	receiving(t, v, 20, "media on b after a failed first pull")
	// The spoilt answer comes UpstreamTimeout after a's session was made, so b's next
	// pull can bring media before the first session is ended (on a loaded machine a's
	// session takes a second or more to make): wait for it, well within the ICE
	// timeouts (10 s) that would end it otherwise.
	opened := func() int {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.opened["a"]
	}
	deadline := time.Now().Add(5 * time.Second)
	for opened() != 2 || d.openSessions("a") != 1 || r["a"].Viewers("s1") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("a 5 s after b's media came through a good pull: %d sessions opened, %d open, %d WHEP sessions; want 2, 1, 1",
				opened(), d.openSessions("a"), r["a"].Viewers("s1"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCascadeLateAnswerEndsOriginSession: the origin made b's session and answered,
// but the answer came back after b's signalling deadline (a slow link), so b gave up
// on it and pulls again a second later. b still ends that first session on the origin
// once the answer arrives, instead of leaving it to its ICE timeouts (about 15 s): the
// origin is down to the one session b pulls through within a couple of seconds.
func TestCascadeLateAnswerEndsOriginSession(t *testing.T) {
	t.Parallel() // waits out timeouts: see TestMain
	d, r := newClusterWith(t, Options{UpstreamTimeout: slow(time.Second)}, "a", "b")
	d.mu.Lock()
	d.late["a"] = slow(1500 * time.Millisecond)
	d.mu.Unlock()
	startPublisher(t, r["a"], "s1")
	v, _ := startViewer(t, r["b"], "s1")
	receiving(t, v, 20, "media on b after a late first answer")
	d.mu.Lock()
	opened := d.opened["a"]
	d.mu.Unlock()
	if opened != 2 {
		t.Fatalf("sessions opened on a: %d, want 2 (the late one and the one b pulls through)", opened)
	}
	waitFor(t, slow(2*time.Second), "a down to the one session b pulls through", func() bool {
		return r["a"].Viewers("s1") == 1 && d.openSessions("a") == 1
	})
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	_ = g.Write(&m)
	return m.GetGauge().GetValue()
}

// TestCascadeOriginNoticesPullerLeaving: the pulling node's last viewer leaves, so it
// closes its upstream peer (a DTLS close_notify goes to the origin), but its DELETE of
// the origin's session is lost. The origin ends that session promptly anyway, not after
// its ICE timeouts (5 s disconnected, then failed).
func TestCascadeOriginNoticesPullerLeaving(t *testing.T) {
	d, r := newCluster(t, "a", "b")
	startPublisher(t, r["a"], "s1")
	v, rid := startViewer(t, r["b"], "s1")
	receiving(t, v, 10, "media on b")
	if got := r["a"].Viewers("s1"); got != 1 {
		t.Fatalf("viewers on a while b pulls: got %d, want 1", got)
	}
	d.mu.Lock()
	d.loseDeletes = true
	d.mu.Unlock()
	if err := r["b"].Delete("s1", rid, RoleViewer); err != nil {
		t.Fatal(err)
	}
	_ = v.Close()
	waitFor(t, slow(5*time.Second), "b closes its upstream", func() bool { return !r["b"].Pulling("s1") })
	closed := time.Now()
	waitFor(t, 20*time.Second, "a ends the puller's session", func() bool { return r["a"].Viewers("s1") == 0 })
	if took := time.Since(closed); took > slow(2*time.Second) {
		t.Fatalf("a ended the session of the puller that left %v after it closed, want within %v", took, slow(2*time.Second))
	}
}
