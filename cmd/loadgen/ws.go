package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/livecart/livecart/web/auth"
)

// wsConfig are the flags of ws mode.
type wsConfig struct {
	server     string
	secret     string
	viewers    int
	rate       float64
	duration   time.Duration
	unpins     int
	serverPIDs []int
	dialConc   int
	timeout    time.Duration
	reader     string // "epoll" or "gorilla"
	sockTime   bool   // -reader epoll: also time arrivals by the kernel's receive stamp
	eventsOut  string // a file for one line per announce event (empty: none)
	query      string // added to the viewers' websocket URLs (pings -heartbeat)
}

// runWS connects N viewers to one stream and publishes `announce` events open loop
// (each carrying its send time), then has a moderator unpin a pinned product a few
// times, and reports delivery latency, gaps, duplicates, and the server's CPU per
// delivery and memory per connection (from /proc of -server-pid).
func runWS(args []string) error {
	var c wsConfig
	fs := flag.NewFlagSet("ws", flag.ContinueOnError)
	fs.StringVar(&c.server, "server", "http://127.0.0.1:8080", "server base URL; several, comma-separated: viewers spread over them, events published through the first")
	fs.StringVar(&c.secret, "secret", os.Getenv("LIVECART_AUTH_SECRET"), "the server's auth secret (mints tokens; default $LIVECART_AUTH_SECRET)")
	fs.IntVar(&c.viewers, "viewers", 1000, "websocket viewers")
	fs.Float64Var(&c.rate, "rate", 10, "announce events a second (open loop)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "publishing time")
	fs.IntVar(&c.unpins, "unpins", 5, "moderator unpins to time after the announce phase")
	pids := fs.String("server-pid", "", "server process ids (comma-separated), for CPU and RSS from /proc (empty: not measured)")
	fs.IntVar(&c.dialConc, "dial-concurrency", 64, "connections opened at once")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Minute, "hard limit on the whole run")
	fs.StringVar(&c.reader, "reader", defaultReader, "how viewers are read: epoll (raw sockets, one epoll loop per core; Linux) or gorilla (a goroutine per viewer)")
	fs.BoolVar(&c.sockTime, "sock-time", false, "-reader epoll: also report latencies to the frame's arrival at the viewer's socket (the kernel's receive stamp, SO_TIMESTAMPNS), which leave out the load generator's own delay in reading it; its reads become recvmsg, ~0.5 µs dearer each (BenchmarkRecv; ~1 µs more loadgen CPU per delivery in full runs), so it is off by default")
	fs.StringVar(&c.eventsOut, "events-out", "", "write one line per announce event to this file (its send time and its latencies' spread over the viewers, by the read and, with -sock-time, the socket) and print the p99 per second of publishing: to tell a burst at one moment from a tail spread over the run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.reader != "epoll" && c.reader != "gorilla" || c.reader == "epoll" && defaultReader != "epoll" {
		return fmt.Errorf("-reader %q: want epoll (Linux only) or gorilla", c.reader)
	}
	for _, p := range strings.Split(*pids, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(p)); err == nil && n > 0 {
			c.serverPIDs = append(c.serverPIDs, n)
		}
	}
	if c.secret == "" {
		return errors.New("-secret (or LIVECART_AUTH_SECRET) is required to mint tokens")
	}
	raiseFileLimit()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	return newWSRun(c).run(ctx)
}

type wsRun struct {
	cfg    wsConfig
	a      *auth.Authenticator
	http   *http.Client
	sid    string
	owner  string // tokens
	mod    string
	events int // announce events planned

	// tallies: one per epoll loop (the gorilla reader's goroutines share the first),
	// so that the loops do not bounce each other's cache lines on every delivery.
	tallies []*tally
	unpinAt atomic.Int64  // unix ns of the unpin in flight
	selfCPU time.Duration // this process's CPU during the announce phase
	// -reader epoll, over the whole reading time: recv calls that returned data,
	// epoll_wait calls, and those that waited.
	recvs, looks, waits int64
}

func newWSRun(c wsConfig) *wsRun {
	r := &wsRun{cfg: c, a: auth.New([]byte(c.secret), nil), http: &http.Client{Timeout: 10 * time.Second}}
	r.events = int(c.rate * c.duration.Seconds())
	n := max(runtime.GOMAXPROCS(0), 1)
	for range n {
		t := &tally{lastViewer: make([]int64, r.events), received: make([]int32, r.events),
			lat: make([]uint32, 0, c.viewers*r.events/n+c.viewers)}
		stamped := c.sockTime && c.reader == "epoll"
		if stamped {
			t.sockLastViewer = make([]int64, r.events)
			t.sockFirstViewer = make([]int64, r.events)
			t.sockLat = make([]uint32, 0, cap(t.lat))
			t.readDelay = make([]uint32, 0, cap(t.lat))
		}
		if c.eventsOut != "" {
			t.byEvent = newEventLats(r.events, c.viewers/n+1, stamped)
		}
		r.tallies = append(r.tallies, t)
	}
	return r
}

// tally is what one reader recorded: each epoll loop has its own, which only it
// writes while reading (no locked instruction per delivery, and its latencies are
// appended in one place, not to 10,000 arrays); the gorilla reader's goroutines
// share the first under its mu. Read the slices once reading has stopped.
type tally struct {
	mu         *sync.Mutex  // non-nil: shared by several readers
	lat        []uint32     // announce latencies, µs
	lastViewer []int64      // per announce k: latest delivery latency (ns)
	received   []int32      // per announce k: viewers that got it
	lastDone   atomic.Int32 // received of the last announce, for waitDelivered meanwhile
	// The same by the socket's receive stamp (-sock-time), and per delivery how long
	// after it the reader had the frame (µs); deliveries without a stamp are left out.
	sockLat         []uint32
	sockLastViewer  []int64
	sockFirstViewer []int64 // per announce k: earliest (0: none yet)
	readDelay       []uint32
	byEvent         *eventLats // -events-out: the latencies again, by event
}

// announce counts the delivery of announce event k sent at sentAt (unix ns) that
// came at at.
func (t *tally) announce(k, sentAt int64, at arrival) {
	lat := at.app - sentAt
	t.lat = append(t.lat, uint32(lat/1000))
	known := k >= 0 && k < int64(len(t.received))
	if known && t.byEvent != nil {
		t.byEvent.add(int(k), sentAt, at)
	}
	if known {
		t.received[k]++
		t.lastViewer[k] = max(t.lastViewer[k], lat)
		if int(k) == len(t.received)-1 {
			t.lastDone.Store(t.received[k])
		}
	}
	if at.sock == 0 || t.sockLastViewer == nil {
		return
	}
	sockLat := at.sock - sentAt
	t.sockLat = append(t.sockLat, uint32(sockLat/1000))
	t.readDelay = append(t.readDelay, uint32((at.app-at.sock)/1000))
	if known {
		t.sockLastViewer[k] = max(t.sockLastViewer[k], sockLat)
		if f := t.sockFirstViewer[k]; f == 0 || sockLat < f {
			t.sockFirstViewer[k] = sockLat
		}
	}
}

// arrival is when a frame came: app when the read that returned it did, sock when
// its bytes had reached the viewer's socket by the kernel's receive stamp (unix ns;
// sock 0: not known).
type arrival struct{ app, sock int64 }

// received is how many viewers have announce event k (once reading has stopped).
func (r *wsRun) received(k int) int {
	n := 0
	for _, t := range r.tallies {
		n += int(t.received[k])
	}
	return n
}

// lastViewer is the latency of announce event k at the last viewer that got it (ns;
// once reading has stopped); sock: by the socket's receive stamps.
func (r *wsRun) lastViewer(k int, sock bool) int64 {
	var m int64
	for _, t := range r.tallies {
		if sock {
			m = max(m, t.sockLastViewer[k])
		} else {
			m = max(m, t.lastViewer[k])
		}
	}
	return m
}

// sockFirstViewer is the latency of announce event k to the first viewer's socket
// (ns; 0: none; once reading has stopped).
func (r *wsRun) sockFirstViewer(k int) int64 {
	var m int64
	for _, t := range r.tallies {
		if f := t.sockFirstViewer[k]; f != 0 && (m == 0 || f < m) {
			m = f
		}
	}
	return m
}

// apiBase is the server that takes the API calls (the first of -server).
func (r *wsRun) apiBase() string { return strings.Split(r.cfg.server, ",")[0] }

func (r *wsRun) token(role auth.Role, user string) string {
	t, err := mintToken(r.a, role, user, user)
	if err != nil {
		panic(err)
	}
	return t
}

// api sends a JSON request and decodes a 2xx answer into out.
func (r *wsRun) api(ctx context.Context, method, path, token string, body, out any) error {
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	code, raw, err := call(ctx, r.http, method, r.apiBase()+path, token, string(b), nil)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, code, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// wsViewer is one connection's record of what it got.
type wsViewer struct {
	// rawMem is raw's memory, next to the fields record updates: an epoll loop's turn
	// at a viewer then misses the cache once, not once per allocation.
	rawMem   rawWS
	raw      *rawWS // -reader epoll: &rawMem
	last     int64
	gaps     int64
	dups     int64
	conn     *websocket.Conn // -reader gorilla
	unpinLat []uint32        // unpin latencies, µs
	// unpin latencies to the socket's receive stamp, µs, per round as unpinLat
	// (-sock-time; 0: the frame had no stamp)
	unpinSockLat []uint32
	closed       error
}

func (r *wsRun) run(ctx context.Context) error {
	r.owner = r.token(auth.RoleCreator, "loadgen-creator")
	r.mod = r.token(auth.RoleModerator, "loadgen-moderator")
	var st struct{ ID string }
	if err := r.api(ctx, "POST", "/api/streams", r.owner, map[string]string{"title": "loadgen ws"}, &st); err != nil {
		return err
	}
	r.sid = st.ID
	var prod struct{ ID string }
	if err := r.api(ctx, "POST", "/api/streams/"+r.sid+"/products", r.owner, map[string]any{
		"sku": "LG-1", "title": "loadgen product", "price_cents": 100, "currency": "EUR", "stock": 10}, &prod); err != nil {
		return err
	}

	rssBefore := procRSS(r.cfg.serverPIDs)
	start := time.Now()
	viewers, err := r.connect(ctx)
	defer closeViewers(viewers)
	if err != nil {
		return err
	}
	connectTime := time.Since(start)
	time.Sleep(2 * time.Second) // let viewer counts settle
	rssAfter := procRSS(r.cfg.serverPIDs)

	stopReading, err := r.startReading(viewers)
	if err != nil {
		return err
	}

	cpu0, self0, t0 := procCPU(r.cfg.serverPIDs), selfCPU(), time.Now()
	sent := r.publish(ctx)
	r.waitDelivered(ctx, sent, 5*time.Second)
	cpu1, self1, t1 := procCPU(r.cfg.serverPIDs), selfCPU(), time.Now()
	r.selfCPU = self1 - self0

	r.unpinRounds(ctx, prod.ID)
	stopReading()

	r.report(viewers, sent, connectTime, rssBefore, rssAfter, cpu1-cpu0, t1.Sub(t0))
	return nil
}

// connect opens the viewers, dialConc at a time, each reading its snapshot.
func (r *wsRun) connect(ctx context.Context) ([]*wsViewer, error) {
	servers := strings.Split(r.cfg.server, ",")
	viewers := make([]*wsViewer, r.cfg.viewers)
	sem := make(chan struct{}, r.cfg.dialConc)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	for i := range viewers {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			u := "ws" + strings.TrimPrefix(servers[i%len(servers)], "http") + "/ws/" + r.sid + r.cfg.query
			v, err := r.dial(ctx, u)
			if v != nil {
				viewers[i] = v
			}
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("viewer %d: %w", i, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	out := viewers[:0]
	for _, v := range viewers {
		if v != nil {
			out = append(out, v)
		}
	}
	return out, firstErr
}

// dial opens one viewer and reads its first frame, which must be a snapshot.
func (r *wsRun) dial(ctx context.Context, u string) (*wsViewer, error) {
	var snap struct {
		Type string
		Seq  int64
	}
	if r.cfg.reader == "epoll" {
		c, err := dialRaw(u, 20*time.Second, r.cfg.sockTime)
		if err != nil {
			return nil, err
		}
		v := &wsViewer{rawMem: *c}
		v.raw = &v.rawMem
		c = v.raw
		first, err := c.readFirst()
		if err == nil {
			err = json.Unmarshal(first, &snap)
		}
		if err == nil && snap.Type != "snapshot" {
			err = fmt.Errorf("first frame %q, want snapshot", snap.Type)
		}
		v.last = snap.Seq
		return v, err
	}
	d := websocket.Dialer{HandshakeTimeout: 20 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 256}
	c, _, err := d.DialContext(ctx, u, nil)
	if err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if err = c.ReadJSON(&snap); err == nil && snap.Type != "snapshot" {
		err = fmt.Errorf("first frame %q, want snapshot", snap.Type)
	}
	c.SetReadDeadline(time.Time{})
	return &wsViewer{conn: c, last: snap.Seq}, err
}

func closeViewers(viewers []*wsViewer) {
	for _, v := range viewers {
		if v.conn != nil {
			v.conn.Close()
		}
		if v.raw != nil {
			v.raw.Close()
		}
	}
}

// startReading reads every viewer until the returned stop is called; stop closes
// the viewers.
func (r *wsRun) startReading(viewers []*wsViewer) (stop func(), err error) {
	if r.cfg.reader == "gorilla" {
		r.tallies[0].mu = new(sync.Mutex)
	}
	if r.cfg.reader == "epoll" {
		e, err := startEpollReaders(viewers, len(r.tallies), func(loop int, v *wsViewer, frame []byte, at arrival) {
			r.record(r.tallies[loop], v, frame, at)
		})
		if err != nil {
			return nil, err
		}
		return func() {
			e.stop()
			for i := range e.recvs {
				r.recvs, r.looks, r.waits = r.recvs+e.recvs[i], r.looks+e.looks[i], r.waits+e.waits[i]
			}
			closeViewers(viewers)
		}, nil
	}
	var wg sync.WaitGroup
	for _, v := range viewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.read(v)
		}()
	}
	return func() {
		closeViewers(viewers)
		wg.Wait()
	}, nil
}

// read consumes one viewer's frames until its connection closes (-reader gorilla).
func (r *wsRun) read(v *wsViewer) {
	var buf bytes.Buffer
	for {
		_, rd, err := v.conn.NextReader()
		if err != nil {
			v.closed = err
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(rd); err != nil {
			v.closed = err
			return
		}
		r.record(r.tallies[0], v, buf.Bytes(), arrival{app: time.Now().UnixNano()})
	}
}

// record checks one text frame a viewer got at at: seq gaps and duplicates, and the
// latency of announce and unpin events; t is the reader's tally.
func (r *wsRun) record(t *tally, v *wsViewer, b []byte, at arrival) {
	ev := parseEvent(b)
	if ev.seq > 0 {
		switch {
		case ev.seq <= v.last:
			v.dups++
		case ev.seq > v.last+1:
			v.gaps += ev.seq - v.last - 1
		}
		if ev.seq > v.last {
			v.last = ev.seq
		}
	}
	switch ev.kind {
	case evAnnounce:
		if t.mu != nil {
			t.mu.Lock()
			t.announce(ev.k, ev.sentAt, at)
			t.mu.Unlock()
		} else {
			t.announce(ev.k, ev.sentAt, at)
		}
	case evUnpin:
		if sent := r.unpinAt.Load(); sent > 0 {
			v.unpinLat = append(v.unpinLat, uint32((at.app-sent)/1000))
			if t.sockLastViewer != nil { // stamping: one entry per round, as unpinLat
				var lat uint32
				if at.sock != 0 {
					lat = uint32((at.sock - sent) / 1000)
				}
				v.unpinSockLat = append(v.unpinSockLat, lat)
			}
		}
	}
}

// Kinds of event record tells apart.
const (
	evOther = iota
	evAnnounce
	evUnpin
)

// event is what record reads from a frame.
type event struct {
	kind      int
	seq       int64 // -1: none
	sentAt, k int64 // announce: the send time (unix ns) and number in its text
}

var (
	announceHead = []byte(`{"type":"announce","seq":`)
	unpinHead    = []byte(`{"type":"unpin"`)
	seqKey       = []byte(`"seq":`)
	sentKey      = []byte(`"text":"t=`)
	kKey         = []byte(`;k=`)
)

// parseEvent reads seq, and for announce events the send time and k, from a frame
// as the server writes it: {"type":"…","seq":N,"ts":"…",fields…} (without seq for
// unsequenced frames). The server's announce frames start with announceHead, so
// their seq is read in place and the text searched for after it; other frames are
// searched from the start. The text searched for is what publish sends.
func parseEvent(b []byte) event {
	ev := event{seq: -1, sentAt: -1, k: -1}
	if bytes.HasPrefix(b, announceHead) {
		ev.kind = evAnnounce
		var n int
		ev.seq, n = leadingInt(b[len(announceHead):])
		rest := b[len(announceHead)+n:]
		ev.sentAt = intAfter(rest, sentKey)
		if i := bytes.Index(rest, kKey); i >= 0 {
			ev.k, _ = leadingInt(rest[i+len(kKey):])
		}
		return ev
	}
	ev.seq = intAfter(b, seqKey)
	switch {
	case bytes.HasPrefix(b, announceHead[:len(`{"type":"announce"`)]): // no seq
		ev.kind = evAnnounce
		ev.sentAt, ev.k = intAfter(b, sentKey), intAfter(b, kKey)
	case bytes.HasPrefix(b, unpinHead):
		ev.kind = evUnpin
	}
	return ev
}

// intAfter parses the decimal number after the first occurrence of key (-1 if none).
func intAfter(b, key []byte) int64 {
	i := bytes.Index(b, key)
	if i < 0 {
		return -1
	}
	n, _ := leadingInt(b[i+len(key):])
	return n
}

// leadingInt parses the decimal digits at the start of b: the number and how many
// bytes it took; -1 when there are none or it does not fit an int64.
func leadingInt(b []byte) (int64, int) {
	var n int64
	j := 0
	for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
		d := int64(b[j] - '0')
		if n > (math.MaxInt64-d)/10 {
			return -1, j
		}
		n = n*10 + d
	}
	if j == 0 {
		return -1, 0
	}
	return n, j
}

// publish sends the announce events on a fixed schedule, each request in its own
// goroutine so that a slow server cannot slow the schedule.
func (r *wsRun) publish(ctx context.Context) int {
	interval := time.Duration(float64(time.Second) / r.cfg.rate)
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for k := range r.events {
		due := start.Add(time.Duration(k) * interval)
		time.Sleep(time.Until(due))
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			text := fmt.Sprintf("t=%d;k=%d", time.Now().UnixNano(), k)
			if err := r.api(ctx, "POST", "/api/streams/"+r.sid+"/announce", r.mod, map[string]string{"text": text}, nil); err != nil {
				if failed.Add(1) == 1 {
					fmt.Fprintln(os.Stderr, "announce:", err)
				}
			}
		}()
	}
	wg.Wait()
	return r.events - int(failed.Load())
}

// waitDelivered waits until every viewer has the last event, or the grace period ends.
func (r *wsRun) waitDelivered(ctx context.Context, sent int, grace time.Duration) {
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		done := 0
		for _, t := range r.tallies {
			done += int(t.lastDone.Load())
		}
		if r.events == 0 || done >= r.cfg.viewers {
			time.Sleep(100 * time.Millisecond)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// unpinRounds pins the product (owner), then has the moderator unpin it, timing the
// unpin's arrival at every viewer.
func (r *wsRun) unpinRounds(ctx context.Context, pid string) {
	for range r.cfg.unpins {
		if err := r.api(ctx, "POST", "/api/streams/"+r.sid+"/pins", r.owner, map[string]string{"product_id": pid}, nil); err != nil {
			fmt.Fprintln(os.Stderr, "pin:", err)
			return
		}
		time.Sleep(500 * time.Millisecond)
		at := time.Now()
		r.unpinAt.Store(at.UnixNano())
		if err := r.api(ctx, "DELETE", "/api/streams/"+r.sid+"/pins/"+pid, r.mod, nil, nil); err != nil {
			fmt.Fprintln(os.Stderr, "unpin:", err)
			return
		}
		time.Sleep(time.Second)
	}
}

func (r *wsRun) report(viewers []*wsViewer, sent int, connect time.Duration, rss0, rss1 int64, cpu, window time.Duration) {
	var lat, unpin []uint32
	var gaps, dups int64
	closed := 0
	for _, t := range r.tallies {
		lat = append(lat, t.lat...)
	}
	for _, v := range viewers {
		unpin = append(unpin, v.unpinLat...)
		gaps += v.gaps
		dups += v.dups
		if v.closed != nil && !websocket.IsCloseError(v.closed, websocket.CloseNormalClosure) && !strings.Contains(v.closed.Error(), "use of closed") {
			if closed == 0 {
				fmt.Printf("  first viewer dropped: %v\n", v.closed)
			}
			closed++
		}
	}
	var last []uint32
	missing := 0
	for k := range sent {
		last = append(last, uint32(r.lastViewer(k, false)/1000))
		missing += len(viewers) - r.received(k)
	}
	unpinLast := r.unpinLast(viewers, func(v *wsViewer) []uint32 { return v.unpinLat })
	deliveries := len(lat)
	fmt.Printf("ws: %d viewers connected in %v; %d announce events at %.0f/s for %v\n", len(viewers), connect.Round(time.Millisecond), sent, r.cfg.rate, r.cfg.duration)
	fmt.Printf("  deliveries %d (expected %d, missing %d), gaps %d, duplicates %d, viewers dropped %d\n", deliveries, sent*len(viewers), missing, gaps, dups, closed)
	fmt.Printf("  latency publish→receive: %s\n", pct(lat))
	fmt.Printf("  time until the last viewer has event k: %s\n", pct(last))
	fmt.Printf("  unpin by moderator → receive (%d rounds, %d deliveries): %s\n", r.cfg.unpins, len(unpin), pct(unpin))
	fmt.Printf("  unpin → last viewer, per round: %s\n", pct(unpinLast))
	if len(r.cfg.serverPIDs) > 0 {
		if deliveries > 0 {
			fmt.Printf("  server CPU %.2fs over %v = %.2f µs per delivery (%.0f%% of one core)\n", cpu.Seconds(), window.Round(time.Millisecond),
				float64(cpu.Microseconds())/float64(deliveries), 100*cpu.Seconds()/window.Seconds())
		}
		fmt.Printf("  loadgen CPU %.2fs = %.2f µs per delivery\n", r.selfCPU.Seconds(), float64(r.selfCPU.Microseconds())/float64(max(deliveries, 1)))
		if r.recvs > 0 {
			frames := deliveries + len(unpin) // not counting pins, viewers and pongs
			fmt.Printf("  reader: %d recv calls (%.2f announce and unpin frames each), %d epoll_wait (%d waited)\n", r.recvs, float64(frames)/float64(r.recvs), r.looks, r.waits)
		}
		fmt.Printf("  server RSS %d MiB → %d MiB = %.1f KiB per connection\n", rss0>>20, rss1>>20, float64(rss1-rss0)/1024/float64(max(len(viewers), 1)))
	}
	if r.tallies[0].sockLastViewer != nil {
		r.reportSocket(viewers, sent)
	}
	if r.cfg.eventsOut != "" {
		if err := r.reportEvents(); err != nil {
			fmt.Fprintln(os.Stderr, "events-out:", err)
		}
	}
}

// reportSocket prints the latencies again, to each frame's arrival at the viewer's
// socket (the kernel's receive stamp) instead of the reader's read of it, and how
// long the reader took to get there: lines after all the others, so that the
// fields of those keep their places.
func (r *wsRun) reportSocket(viewers []*wsViewer, sent int) {
	var lat, delay, unpin, last, first, spread []uint32
	for _, t := range r.tallies {
		lat = append(lat, t.sockLat...)
		delay = append(delay, t.readDelay...)
	}
	for _, v := range viewers {
		for _, us := range v.unpinSockLat {
			if us > 0 {
				unpin = append(unpin, us)
			}
		}
	}
	for k := range sent {
		l, f := r.lastViewer(k, true), r.sockFirstViewer(k)
		if f == 0 {
			continue
		}
		last, first, spread = append(last, uint32(l/1000)), append(first, uint32(f/1000)), append(spread, uint32((l-f)/1000))
	}
	unpinLast := r.unpinLast(viewers, func(v *wsViewer) []uint32 { return v.unpinSockLat })
	fmt.Printf("  socket arrival (kernel receive stamp), %d of the deliveries stamped:\n", len(lat))
	fmt.Printf("  socket publish→arrival: %s\n", pct(lat))
	fmt.Printf("  socket arrival→read (the load generator's delay): %s\n", pct(delay))
	fmt.Printf("  socket last-viewer-has-event-k: %s\n", pct(last))
	fmt.Printf("  socket first-viewer-has-event-k: %s\n", pct(first))
	fmt.Printf("  socket first→last viewer of event k (the fan-out's span): %s\n", pct(spread))
	fmt.Printf("  socket unpin→arrival (%d deliveries): %s\n", len(unpin), pct(unpin))
	fmt.Printf("  socket unpin→last-viewer, each round: %s\n", pct(unpinLast))
}

// unpinLast is, per unpin round, the latest of the viewers' latencies (µs) for it.
func (r *wsRun) unpinLast(viewers []*wsViewer, lats func(*wsViewer) []uint32) []uint32 {
	var out []uint32
	for i := range r.cfg.unpins {
		var m uint32
		for _, v := range viewers {
			if l := lats(v); i < len(l) {
				m = max(m, l[i])
			}
		}
		out = append(out, m)
	}
	return out
}

// pct renders p50/p99/max of microsecond samples.
func pct(us []uint32) string {
	if len(us) == 0 {
		return "no samples"
	}
	slices.Sort(us)
	at := func(p float64) time.Duration {
		return time.Duration(us[int(float64(len(us)-1)*p)]) * time.Microsecond
	}
	return fmt.Sprintf("p50 %v  p99 %v  max %v", at(0.5).Round(10*time.Microsecond), at(0.99).Round(10*time.Microsecond), at(1).Round(10*time.Microsecond))
}

// procCPU returns the user+system CPU time of the processes.
func procCPU(pids []int) time.Duration {
	var sum time.Duration
	for _, p := range pids {
		sum += cpuTime(p)
	}
	return sum
}

// procRSS returns the resident memory of the processes in bytes.
func procRSS(pids []int) int64 {
	var sum int64
	for _, p := range pids {
		sum += rssBytes(p)
	}
	return sum
}
