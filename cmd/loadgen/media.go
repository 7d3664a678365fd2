package main

// Media mode: one WHIP publisher sending a synthetic 720p30 VP8 stream (~2 Mb/s, paced
// like libwebrtc's sender unless -pace 0) plus Opus, and N WHEP viewers, each a real pion PeerConnection (ICE, DTLS, SRTP, NACK,
// receiver reports). Every payload carries its send time and a sequence number (a
// stamp), so relay latency is measured end to end on one host clock and loss packet by
// packet: a packet the publisher sent in the measured window is lost for a viewer that
// has not received it within -max-late of its sending (retransmissions included).

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/dtls/v2"
	"github.com/pion/webrtc/v3"

	"github.com/livecart/livecart/stream/rtctest"
)

type mediaConfig struct {
	url, stream, token string
	viewURL            string // the node the viewers watch (default url)
	viewers            []int
	duration, warmup   time.Duration
	serverPID          int
	bitrate, fps       int
	joinParallel       int
	pacing             []float64
	viewerSRTP         []dtls.SRTPProtectionProfile // nil: pion's default list
	viewerGRO          bool
	sockTimes          bool // viewers' sockets keep kernel receive times
	diag               bool
	grace              time.Duration
}

func parseMediaFlags(args []string) (mediaConfig, error) {
	fs := flag.NewFlagSet("media", flag.ContinueOnError)
	var c mediaConfig
	var viewers string
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "server base URL")
	fs.StringVar(&c.stream, "stream", "", "stream id (empty: create one with -token, a creator token)")
	fs.StringVar(&c.viewURL, "view-url", "", "base URL the viewers watch (default -url); another node of the same service measures media pulled across nodes")
	fs.StringVar(&c.token, "token", "", "WHIP bearer: the stream key or the owner's token (a creator token when -stream is empty)")
	fs.StringVar(&viewers, "viewers", "50", "viewer counts to run one after another, e.g. 50,100,200")
	fs.DurationVar(&c.duration, "duration", 15*time.Second, "measured time per viewer count")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "time after the last viewer joined before measuring")
	fs.IntVar(&c.serverPID, "server-pid", 0, "pid of the server, for its CPU and RSS (0: not reported)")
	fs.IntVar(&c.bitrate, "bitrate", 2_000_000, "video bits per second")
	fs.IntVar(&c.fps, "fps", 30, "video frames per second")
	fs.IntVar(&c.joinParallel, "join-parallel", 16, "viewers connecting at once")
	var pacing string
	fs.StringVar(&pacing, "pace", "2.5,0", "publisher pacing factors, each measured in turn with the same viewers: "+
		"video packets leave at factor × bitrate every 5 ms, as libwebrtc's pacer (2.5); 0: each frame as one burst")
	var srtp string
	fs.StringVar(&srtp, "viewer-srtp", "default", "SRTP profiles the viewers offer: default (pion's: AES-256-GCM, AES-128-GCM, "+
		"AES-CM/HMAC-SHA1-80) or sha1 (AES-CM/HMAC-SHA1-80 only: what Chromium ends up with, as it prefers it to GCM)")
	fs.BoolVar(&c.viewerGRO, "viewer-gro", true, "viewers' sockets read the relay's UDP GSO trains whole (UDP_GRO, Linux): "+
		"one recvmsg per train instead of per packet; every packet still goes through pion's ICE, SRTP and interceptors")
	fs.BoolVar(&c.sockTimes, "viewer-sock-times", runtime.GOOS == "linux", "viewers' sockets keep each packet's kernel receive time "+
		"(SO_TIMESTAMPNS, Linux) for the sock_p50/sock_p99 columns: publisher send → arrival at the viewer's socket, "+
		"without the viewer's own SRTP and scheduling")
	fs.BoolVar(&c.diag, "diag", false, "match every packet by payload, wait -grace for late ones, and report where the lost ones went "+
		"(the kernel's UDP drop counters, the relay's /metrics)")
	fs.DurationVar(&c.grace, "max-late", time.Second, "a packet counts as lost unless it reaches the viewer within this time of its "+
		"sending (retransmissions included); the run waits this long after the window for the packets still in flight")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch srtp {
	case "default":
	case "sha1":
		c.viewerSRTP = []dtls.SRTPProtectionProfile{dtls.SRTP_AES128_CM_HMAC_SHA1_80}
	default:
		return c, fmt.Errorf("-viewer-srtp: %q is not default or sha1", srtp)
	}
	for _, f := range strings.Split(pacing, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v < 0 || v > 100 {
			return c, fmt.Errorf("-pace: %q is not a factor in 0..100", f)
		}
		c.pacing = append(c.pacing, v)
	}
	for _, f := range strings.Split(viewers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 2000 {
			return c, fmt.Errorf("-viewers: %q is not a count in 1..2000", f)
		}
		c.viewers = append(c.viewers, n)
	}
	if c.token == "" {
		return c, errors.New("-token is required (stream key or token)")
	}
	if c.duration <= 0 || c.duration > 10*time.Minute {
		return c, errors.New("-duration must be in (0, 10m]")
	}
	c.url = strings.TrimRight(c.url, "/")
	if c.viewURL == "" {
		c.viewURL = c.url
	}
	c.viewURL = strings.TrimRight(c.viewURL, "/")
	return c, nil
}

func runMedia(args []string) error {
	cfg, err := parseMediaFlags(args)
	if err != nil {
		return err
	}
	// The viewers' pion stacks allocate per packet; collecting less often leaves more of
	// the shared cores to the server being measured (the heap stays small).
	debug.SetGCPercent(400)
	ctx, cancel := context.WithTimeout(context.Background(),
		time.Duration(len(cfg.viewers))*(cfg.duration+cfg.warmup+2*time.Minute))
	defer cancel()
	client := &http.Client{Timeout: 30 * time.Second}
	if cfg.stream == "" {
		if cfg.stream, cfg.token, err = createMediaStream(ctx, client, cfg); err != nil {
			return err
		}
	}
	api, err := rtctest.NewAPI()
	if err != nil {
		return err
	}
	viewerAPI := api
	vopts := rtctest.ViewerOptions{KeepLatency: true}
	if cfg.sockTimes {
		vopts.SocketTimes = rtctest.NewSocketTimes()
	}
	if cfg.viewerSRTP != nil || cfg.viewerGRO || cfg.sockTimes {
		viewerAPI, err = rtctest.NewAPIWithOptions(rtctest.APIOptions{SRTP: cfg.viewerSRTP, GRO: cfg.viewerGRO,
			SocketTimes: vopts.SocketTimes})
		if err != nil {
			return err
		}
	}
	pub, err := rtctest.NewPublisher(api, rtctest.PublisherOptions{Bitrate: cfg.bitrate, FPS: cfg.fps, Pacing: cfg.pacing[0]})
	if err != nil {
		return err
	}
	defer pub.Close()
	var pubLoc string
	err = pub.Connect(ctx, func(ctx context.Context, offer string) (string, error) {
		ans, loc, err := postSDP(ctx, client, cfg.url+"/whip/"+cfg.stream, cfg.token, offer)
		pubLoc = loc
		return ans, err
	})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer deleteSession(client, cfg.url+pubLoc, cfg.token)
	pubCtx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); pub.Run(pubCtx) }()
	defer func() { stopPub(); <-pubDone }()

	fmt.Printf("loadgen media: publish %s, watch %s, stream %s, %d kb/s VP8 %d fps + Opus, %v measured after %v warm-up, nproc %d\n",
		cfg.url, cfg.viewURL, cfg.stream, cfg.bitrate/1000, cfg.fps, cfg.duration, cfg.warmup, mediaNumCPU())
	fmt.Println(mediaHeader)
	for _, n := range cfg.viewers {
		rs, err := mediaRound(ctx, viewerAPI, vopts, client, cfg, pub, n)
		if err != nil {
			return err
		}
		for _, r := range rs {
			fmt.Println(r)
			fmt.Print(r.diag)
		}
	}
	return nil
}

// mediaHeader names the columns of mediaResult.String.
var mediaHeader = fmt.Sprintf("%6s %5s %8s %9s %10s %9s %10s %8s %8s %8s %8s %9s %9s %5s %9s %9s",
	"N", "pace", "srv_cpu%", "srv_rss", "rss/view", "gen_cpu%", "pkts/s", "loss%", "worst%",
	"lat_p50", "lat_p99", "kf_p50", "kf_p99", "fail", "sock_p50", "sock_p99")

// mediaResult is one row of the report.
type mediaResult struct {
	n, failed                    int
	pacing                       float64
	srvCPU, genCPU               float64 // % of one core
	srvRSS, rssPerViewer         float64 // MiB
	pktsPerSec                   float64
	lossPct, worstPct            float64
	latP50, latP99, kfP50, kfP99 time.Duration // lat: publisher send → the viewer's read
	// sockP50, sockP99: publisher send → arrival at the viewer's socket (kernel time);
	// sockSamples is how many there were (0: the viewers' sockets keep no times).
	sockP50, sockP99 time.Duration
	sockSamples      int
	diag             string
}

// String is the row: fixed fields, the newest appended at the end (scripts read them by
// position).
func (r mediaResult) String() string {
	sock := fmt.Sprintf(" %9s %9s", "-", "-")
	if r.sockSamples > 0 {
		sock = fmt.Sprintf(" %7.1fms %7.1fms", ms(r.sockP50), ms(r.sockP99))
	}
	return fmt.Sprintf("%6d %5.1f %8.1f %8.1fM %9.2fM %9.1f %10.0f %8.3f %8.3f %7.1fms %7.1fms %8.0fms %8.0fms %5d",
		r.n, r.pacing, r.srvCPU, r.srvRSS, r.rssPerViewer, r.genCPU, r.pktsPerSec, r.lossPct, r.worstPct,
		ms(r.latP50), ms(r.latP99), ms(r.kfP50), ms(r.kfP99), r.failed) + sock
}

// mediaRound joins n viewers, measures at each pacing factor in turn, and makes them
// leave.
func mediaRound(ctx context.Context, api *webrtc.API, vopts rtctest.ViewerOptions, client *http.Client, cfg mediaConfig,
	pub *rtctest.Publisher, n int) ([]mediaResult, error) {
	rssBefore := mediaProcRSS(cfg.serverPID)
	viewers, locs, failed := joinViewers(ctx, api, vopts, client, cfg, n)
	defer func() {
		var wg sync.WaitGroup
		for i, v := range viewers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				deleteSession(client, cfg.viewURL+locs[i], "")
				_ = v.Close()
			}()
		}
		wg.Wait()
		time.Sleep(2 * time.Second) // let the server settle before the next round
	}()
	if len(viewers) == 0 {
		return nil, errors.New("no viewer connected")
	}
	var rs []mediaResult
	for i, f := range cfg.pacing {
		pub.SetPacing(f)
		warmup := cfg.warmup
		if i > 0 {
			warmup = min(warmup, time.Second) // the viewers are up: only the pacing changed
		}
		mediaSleep(ctx, warmup)
		r := measureMedia(ctx, cfg, pub, viewers, rssBefore)
		r.n, r.failed, r.pacing = n, failed, f
		rs = append(rs, r)
	}
	return rs, nil
}

// measureMedia measures the server and the viewers for cfg.duration.
func measureMedia(ctx context.Context, cfg mediaConfig, pub *rtctest.Publisher, viewers []*rtctest.Viewer, rssBefore float64) mediaResult {
	var res mediaResult
	var c0 udpCounters
	if cfg.diag { // first: a read of /metrics takes milliseconds
		c0 = readUDPCounters(cfg.serverPID, cfg.url+"/metrics")
	}
	start := make([]rtctest.ViewerStats, len(viewers))
	for i, v := range viewers {
		start[i] = v.Stats() // also drops warm-up latency samples
	}
	for _, v := range viewers {
		v.Record()
	}
	srv0, gen0, t0 := mediaProcCPU(cfg.serverPID), mediaProcCPU(os.Getpid()), time.Now()
	sent0 := pub.PacketsSent.Load()
	mediaSleep(ctx, cfg.duration)
	srv1, gen1, wall := mediaProcCPU(cfg.serverPID), mediaProcCPU(os.Getpid()), time.Since(t0)
	sent1 := pub.PacketsSent.Load()
	end := time.Now()
	sent := int(sent1 - sent0)
	res.srvRSS = mediaProcRSS(cfg.serverPID)
	if cfg.serverPID > 0 {
		res.rssPerViewer = (res.srvRSS - rssBefore) / float64(len(viewers))
	}
	res.srvCPU = 100 * (srv1 - srv0) / wall.Seconds()
	res.genCPU = 100 * (gen1 - gen0) / wall.Seconds()

	var lat, sock []int32
	var kf []time.Duration
	var got, expected int
	for i, v := range viewers {
		s := v.Stats()
		lat = append(lat, s.LatencyMicros...)
		sock = append(sock, s.SockLatencyMicros...)
		g := (s.Audio.Packets - start[i].Audio.Packets) + (s.Video.Packets - start[i].Video.Packets)
		e := sent
		got, expected = got+g, expected+e
		if !s.FirstKeyframeAt.IsZero() {
			kf = append(kf, s.FirstKeyframeAt.Sub(s.ConnectedAt))
		}
	}
	res.pktsPerSec = float64(got) / wall.Seconds()
	countPct := 0.0
	if expected > 0 {
		countPct = 100 * float64(max(expected-got, 0)) / float64(expected)
	}
	slices.Sort(lat)
	res.latP50 = time.Duration(mediaPercentile(lat, 0.50)) * time.Microsecond
	res.latP99 = time.Duration(mediaPercentile(lat, 0.99)) * time.Microsecond
	slices.Sort(sock)
	res.sockP50 = time.Duration(mediaPercentile(sock, 0.50)) * time.Microsecond
	res.sockP99 = time.Duration(mediaPercentile(sock, 0.99)) * time.Microsecond
	res.sockSamples = len(sock)
	slices.Sort(kf)
	res.kfP50, res.kfP99 = mediaPercentile(kf, 0.50), mediaPercentile(kf, 0.99)

	// Loss: every packet the publisher sent in the window (stamps sent0+1..sent1),
	// matched by payload, that a viewer did not get within maxLate of its sending. The
	// window's packets still in flight when it closes are waited for; retransmissions
	// count when they come in time. (Counting packets received in the window against
	// packets sent in it, as before, counted those in flight at its end as lost.)
	mediaSleep(ctx, cfg.grace)
	var c1 udpCounters
	if cfg.diag {
		c1 = readUDPCounters(cfg.serverPID, cfg.url+"/metrics")
	}
	recs := make([][]rtctest.Arrival, len(viewers))
	for i, v := range viewers {
		recs[i] = v.Recorded()
	}
	pl := matchPayloads(recs, uint32(sent0), uint32(sent1), end, cfg.grace)
	res.lossPct, res.worstPct = pl.pct(), pl.worstPct()
	if cfg.diag {
		res.diag = diagReport(pl, countPct, cfg.grace, c0, c1) + sockReport(recs)
	}
	return res
}

func mediaPercentile[T any](sorted []T, q float64) T {
	var zero T
	if len(sorted) == 0 {
		return zero
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// joinViewers connects n viewers, joinParallel at a time.
func joinViewers(ctx context.Context, api *webrtc.API, vopts rtctest.ViewerOptions, client *http.Client, cfg mediaConfig,
	n int) ([]*rtctest.Viewer, []string, int) {
	var mu sync.Mutex
	var viewers []*rtctest.Viewer
	var locs []string
	failed := 0
	sem := make(chan struct{}, cfg.joinParallel)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			v, loc, err := joinViewer(ctx, api, vopts, client, cfg)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				if failed <= 3 {
					fmt.Fprintln(os.Stderr, "viewer:", err)
				}
				return
			}
			viewers, locs = append(viewers, v), append(locs, loc)
		}()
	}
	wg.Wait()
	return viewers, locs, failed
}

func joinViewer(ctx context.Context, api *webrtc.API, vopts rtctest.ViewerOptions, client *http.Client,
	cfg mediaConfig) (*rtctest.Viewer, string, error) {
	v, err := rtctest.NewViewerWithOptions(api, vopts)
	if err != nil {
		return nil, "", err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var loc string
	err = v.Connect(cctx, func(ctx context.Context, offer string) (string, error) {
		ans, l, err := postSDP(ctx, client, cfg.viewURL+"/whep/"+cfg.stream, "", offer)
		loc = l
		return ans, err
	})
	if err != nil {
		_ = v.Close()
		if loc != "" {
			deleteSession(client, cfg.viewURL+loc, "")
		}
		return nil, "", err
	}
	return v, loc, nil
}

// postSDP sends an offer; it returns the answer and the session's Location.
func postSDP(ctx context.Context, client *http.Client, url, token, offer string) (string, string, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(offer))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return "", "", fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return string(body), resp.Header.Get("Location"), nil
}

func deleteSession(client *http.Client, url, token string) {
	req, err := http.NewRequest("DELETE", url, nil)
	if err != nil {
		return
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
	}
}

// createMediaStream creates a stream with a creator token and returns its id and key.
func createMediaStream(ctx context.Context, client *http.Client, cfg mediaConfig) (string, string, error) {
	code, raw, err := call(ctx, client, "POST", cfg.url+"/api/streams", cfg.token, `{"title":"loadgen media"}`, nil)
	if err != nil {
		return "", "", err
	}
	if code != http.StatusCreated {
		return "", "", fmt.Errorf("create stream: %d %s", code, raw)
	}
	var st struct {
		ID        string `json:"id"`
		StreamKey string `json:"stream_key"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", "", err
	}
	return st.ID, st.StreamKey, nil
}

func mediaSleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// mediaProcCPU is pid's CPU time in seconds (0 if unknown).
func mediaProcCPU(pid int) float64 { return cpuTime(pid).Seconds() }

// mediaProcRSS is pid's resident set in MiB (0 if unknown).
func mediaProcRSS(pid int) float64 { return float64(rssBytes(pid)) / (1 << 20) }

func mediaNumCPU() int {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(raw), "processor\t:")
}
