package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livecart/livecart/web/auth"
)

// saleConfig are the flags of `loadgen sale`.
type saleConfig struct {
	targets  []target
	secret   string
	buyers   []int
	quantity int // units in the sale; 0 = as many as buyers (every hold is a write)
	runs     int
	timeout  time.Duration
	ramp     time.Duration // buyers start spread evenly over this window (0 = all at once)
	// duration: each run repeats its noop and sale storms (alternating, a fresh sale
	// each time) until each kind has run this long in all; 0 = one storm of each.
	duration time.Duration
	storms   int        // with duration: at least this many storms of each kind per run
	cpu      []cpuWatch // processes whose CPU time is read around each storm
	ctl      []ctlWatch // perf control fifos switched on around each storm of a kind
	// ctlFiles are ctl's fifos, opened on first use (an open waits for perf) and kept
	// open: path → file. Used by the run's one goroutine only.
	ctlFiles map[string]*os.File
}

// ctlWatch is a perf control fifo (perf stat/record --control fifo:CTL,ACK -D -1) that
// the target's storms of one kind (noop or sale) enable and then disable again:
// -perfctl target/kind=CTL:ACK, so perf counts only those storms.
type ctlWatch struct {
	target, kind string
	ctl, ack     string
}

type ctlList []ctlWatch

func (l *ctlList) String() string { return fmt.Sprint(*l) }
func (l *ctlList) Set(v string) error {
	name, paths, ok := strings.Cut(v, "=")
	t, kind, ok2 := strings.Cut(name, "/")
	ctl, ack, ok3 := strings.Cut(paths, ":")
	if !ok || !ok2 || !ok3 || (kind != "noop" && kind != "sale") {
		return fmt.Errorf("-perfctl %q: want target/noop=CTL:ACK or target/sale=CTL:ACK", v)
	}
	*l = append(*l, ctlWatch{t, kind, ctl, ack})
	return nil
}

// perfCtl sends cmd (enable, disable) to each fifo of the target's storms of kind and
// waits for perf's ack.
func perfCtl(cfg saleConfig, t, kind, cmd string) error {
	for _, w := range cfg.ctl {
		if w.target != t || w.kind != kind {
			continue
		}
		c, a := cfg.ctlFiles[w.ctl], cfg.ctlFiles[w.ack]
		if c == nil {
			var err error
			if c, err = os.OpenFile(w.ctl, os.O_WRONLY, 0); err != nil {
				return fmt.Errorf("-perfctl: %w", err)
			}
			if a, err = os.OpenFile(w.ack, os.O_RDONLY, 0); err != nil {
				c.Close()
				return fmt.Errorf("-perfctl: %w", err)
			}
			cfg.ctlFiles[w.ctl], cfg.ctlFiles[w.ack] = c, a
		}
		if _, err := fmt.Fprintln(c, cmd); err != nil {
			return fmt.Errorf("-perfctl %s: %w", w.ctl, err)
		}
		var buf [16]byte
		if _, err := a.Read(buf[:]); err != nil {
			return fmt.Errorf("-perfctl %s: %w", w.ack, err)
		}
	}
	return nil
}

// cpuWatch is a process to charge a target's storms to: -cpu target=pid or
// -cpu target/label=pid (e.g. redis/redis-server=123).
type cpuWatch struct {
	target, label string
	pid           int
}

type cpuList []cpuWatch

func (l *cpuList) String() string { return fmt.Sprint(*l) }
func (l *cpuList) Set(v string) error {
	name, pid, ok := strings.Cut(v, "=")
	w := cpuWatch{}
	if pid == "idle" {
		w.pid = -1 // the machine's idle time (all cores), from /proc/stat
	} else if pid == "self" {
		w.pid = os.Getpid() // the load generator itself
	} else if _, err := fmt.Sscan(pid, &w.pid); !ok || err != nil || w.pid <= 0 {
		return fmt.Errorf("-cpu %q: want target=pid, target/label=pid, target/label=idle or target/label=self", v)
	}
	w.target, w.label, _ = strings.Cut(name, "/")
	if w.label == "" {
		w.label = "server"
	}
	*l = append(*l, w)
	return nil
}

type target struct{ name, url string }

type targetList []target

func (l *targetList) String() string { return fmt.Sprint(*l) }
func (l *targetList) Set(v string) error {
	name, url, ok := strings.Cut(v, "=")
	if !ok {
		name, url = v, v
	}
	*l = append(*l, target{name, strings.TrimRight(url, "/")})
	return nil
}

// runSale: N concurrent buyers, each with its own token, hold one unit of a flash sale
// and check out, against each target server; then the same number of requests against
// GET /api/noop (HTTP + auth ceiling). Prints holds/s, checkouts/s, p50/p99 and the
// oversell check, the median of -runs runs.
func runSale(args []string) error {
	cfg, err := parseSaleFlags(args)
	if err != nil {
		return err
	}
	a := auth.New([]byte(cfg.secret), nil)
	fmt.Printf("loadgen sale: %d run(s) each (median), buyers %v, ramp %v, duration %v per phase, date %s\n", cfg.runs, cfg.buyers, cfg.ramp, cfg.duration, time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("%-10s %7s %-8s %8s %10s %9s %9s %9s %9s %-8s %s\n", "target", "buyers", "op", "ops/s", "ok/s", "p50_ms", "p99_ms", "ok", "fail", "oversell", "runs_ops/s (storms)")
	for _, n := range cfg.buyers {
		for _, t := range cfg.targets {
			if err := benchTarget(cfg, a, t, n); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
		}
	}
	return nil
}

func parseSaleFlags(args []string) (saleConfig, error) {
	fs := flag.NewFlagSet("sale", flag.ContinueOnError)
	var (
		cfg     saleConfig
		targets targetList
		buyers  string
		cpu     cpuList
		ctl     ctlList
	)
	fs.Var(&ctl, "perfctl", "target/noop=CTL:ACK or target/sale=CTL:ACK (repeatable): perf --control fifos enabled around the target's storms of that kind only")
	fs.Var(&cpu, "cpu", "target=pid or target/label=pid (repeatable): report that process's CPU µs per request during the target's noop and sale storms (utime+stime from /proc); target/label=idle: the machine's idle time (all cores) instead; target/label=self: the load generator's own")
	fs.Var(&targets, "target", "name=URL of a running server (repeatable), e.g. embedded=http://127.0.0.1:8080")
	fs.StringVar(&cfg.secret, "secret", os.Getenv("LIVECART_AUTH_SECRET"), "the servers' auth secret (mints the tokens)")
	fs.StringVar(&buyers, "buyers", "1000,5000", "comma-separated numbers of concurrent buyers")
	fs.IntVar(&cfg.quantity, "quantity", 0, "units in the sale (0 = one per buyer)")
	fs.IntVar(&cfg.runs, "runs", 3, "runs per target and buyer count (the median is reported)")
	fs.DurationVar(&cfg.timeout, "timeout", 60*time.Second, "bound on one run")
	fs.DurationVar(&cfg.ramp, "ramp", 0, "spread the buyers' start evenly over this window (0 = all at once)")
	fs.IntVar(&cfg.storms, "storms", 3, "with -duration > 0: at least this many noop and sale storms per run")
	fs.DurationVar(&cfg.duration, "duration", 2*time.Second, "per run, repeat the noop and sale storms (alternating; a fresh sale each, checked after each) until each has run this long in all (0 = one storm each)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if len(targets) == 0 {
		targets = targetList{{"server", "http://127.0.0.1:8080"}}
	}
	cfg.targets = targets
	cfg.cpu = cpu
	cfg.ctl, cfg.ctlFiles = ctl, map[string]*os.File{}
	if cfg.secret == "" {
		return cfg, errors.New("-secret (or LIVECART_AUTH_SECRET) is required to mint tokens")
	}
	for _, f := range strings.Split(buyers, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err != nil || n < 1 || n > 20000 {
			return cfg, fmt.Errorf("-buyers %q: want numbers 1..20000", buyers)
		}
		cfg.buyers = append(cfg.buyers, n)
	}
	if cfg.runs < 1 {
		cfg.runs = 1
	}
	return cfg, nil
}

// opStats summarises one kind of request of one run.
type opStats struct {
	perSec, okPerSec float64
	p50, p99         time.Duration
	ok, fail         int
}

type runResult struct {
	hold, checkout, noop opStats
	sale                 opStats // holds and checkouts together (two requests per buyer, like noop)
	oversell             int     // sold beyond quantity, summed over the run's sales (must be 0)
	invariantBroken      bool
	storms               int // sale storms in the run (as many noop storms, ±1)
	// failures counts the failed sale requests by what failed ("hold 503", "checkout
	// error", ...); replayed and placed: the failed checkouts replayed after their storm
	// with the same Idempotency-Key, and how many of those answered an order.
	failures         map[string]int
	replayed, placed int
	// cpuNoop, cpuSale: CPU µs per request of each watched process (by label) during
	// the noop storms and during the sale storms
	cpuNoop, cpuSale map[string]float64
	// noopReqs, saleReqs: the requests of the run's noop and sale storms
	noopReqs, saleReqs int
}

func benchTarget(cfg saleConfig, a *auth.Authenticator, t target, n int) error {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: n + 10, MaxIdleConnsPerHost: n + 10, MaxConnsPerHost: 0, IdleConnTimeout: time.Minute}}
	defer client.CloseIdleConnections()
	tokens := make([]string, n)
	for i := range tokens {
		tok, err := mintToken(a, auth.RoleViewer, fmt.Sprintf("buyer-%d-%d", time.Now().UnixNano(), i), "buyer")
		if err != nil {
			return err
		}
		tokens[i] = tok
	}
	var results []runResult
	for r := 0; r < cfg.runs; r++ {
		res, err := oneRun(cfg, a, client, t, tokens, n)
		if err != nil {
			return err
		}
		results = append(results, res)
	}
	// median of f over the runs, and every run's value in run order
	median := func(f func(runResult) float64) (float64, []float64) {
		var v []float64
		for _, r := range results {
			v = append(v, f(r))
		}
		sorted := slices.Sorted(slices.Values(v))
		return sorted[len(sorted)/2], v
	}
	med := func(pick func(runResult) opStats) opStats {
		m := func(f func(opStats) float64) float64 {
			x, _ := median(func(r runResult) float64 { return f(pick(r)) })
			return x
		}
		return opStats{
			perSec: m(func(o opStats) float64 { return o.perSec }), okPerSec: m(func(o opStats) float64 { return o.okPerSec }),
			p50: time.Duration(m(func(o opStats) float64 { return float64(o.p50) })), p99: time.Duration(m(func(o opStats) float64 { return float64(o.p99) })),
			ok: int(m(func(o opStats) float64 { return float64(o.ok) })), fail: int(m(func(o opStats) float64 { return float64(o.fail) })),
		}
	}
	oversell, broken := 0, false
	failures, replayed, placed := map[string]int{}, 0, 0
	for _, r := range results {
		oversell += r.oversell
		broken = broken || r.invariantBroken
		for k, v := range r.failures {
			failures[k] += v
		}
		replayed += r.replayed
		placed += r.placed
	}
	check := fmt.Sprintf("%d", oversell)
	if broken {
		check += " INVARIANT BROKEN"
	}
	list := func(v []float64, format string) string { return joinFloats(v, format, ",") }
	storms, _ := median(func(r runResult) float64 { return float64(r.storms) })
	for _, row := range []struct {
		op   string
		pick func(runResult) opStats
	}{{"noop", func(r runResult) opStats { return r.noop }}, {"hold", func(r runResult) opStats { return r.hold }},
		{"checkout", func(r runResult) opStats { return r.checkout }}, {"sale", func(r runResult) opStats { return r.sale }}} {
		s := med(row.pick)
		over := ""
		if row.op != "noop" {
			over = check
		}
		_, each := median(func(r runResult) float64 { return row.pick(r).perSec })
		fmt.Printf("%-10s %7d %-8s %8.0f %10.0f %9.1f %9.1f %9d %9d %-8s %s (%.0f)\n", t.name, n, row.op, s.perSec, s.okPerSec,
			ms(s.p50), ms(s.p99), s.ok, s.fail, over, list(each, "%.0f"), storms)
	}
	if len(failures) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(failures)) {
			parts = append(parts, fmt.Sprintf("%s ×%d", k, failures[k]))
		}
		fmt.Printf("%-10s %7d %-8s all runs: %s; failed checkouts replayed after their storm with the same key: %d, answered with an order: %d\n",
			t.name, n, "failures", strings.Join(parts, ", "), replayed, placed)
	}
	ratio, each := median(func(r runResult) float64 { return 100 * r.sale.perSec / max(r.noop.perSec, 1e-9) })
	fmt.Printf("%-10s %7d %-8s %7.0f%% of noop, runs %s\n", t.name, n, "sale/noop", ratio, list(each, "%.0f%%"))
	var labels []string
	for _, w := range cfg.cpu {
		if w.target == t.name {
			labels = append(labels, w.label)
		}
	}
	if len(cfg.ctl) > 0 {
		var nn, ns int
		for _, r := range results {
			nn += r.noopReqs
			ns += r.saleReqs
		}
		fmt.Printf("%-10s %7d %-8s noop %d, sale %d (all runs, the -perfctl windows)\n", t.name, n, "requests", nn, ns)
	}
	for _, l := range labels {
		noop, _ := median(func(r runResult) float64 { return r.cpuNoop[l] })
		sale, each := median(func(r runResult) float64 { return r.cpuSale[l] })
		fmt.Printf("%-10s %7d %-8s %s: noop %.1f, sale %.1f (runs %s)\n", t.name, n, "cpu_us/req", l, noop, sale, list(each, "%.1f"))
	}
	if oversell > 0 || broken {
		return fmt.Errorf("oversell %d, invariant broken %v", oversell, broken)
	}
	return nil
}

// oneRun warms every buyer's connection up, then runs noop storms and sale storms in
// turn (each sale storm on a fresh stream, product and sale, checked right after)
// until each kind has run cfg.duration in all and at least cfg.storms times (one of
// each when the duration is 0). Throughput is
// requests over the summed wall time of the storms of a kind; latencies are pooled.
func oneRun(cfg saleConfig, a *auth.Authenticator, client *http.Client, t target, tokens []string, n int) (runResult, error) {
	res := runResult{cpuNoop: map[string]float64{}, cpuSale: map[string]float64{}, failures: map[string]int{}}
	base := t.url
	var watch []cpuWatch
	for _, w := range cfg.cpu {
		if w.target == t.name {
			watch = append(watch, w)
		}
	}
	// cpu reads every watched process's CPU time now.
	cpu := func() []time.Duration {
		out := make([]time.Duration, len(watch))
		for i, w := range watch {
			out[i] = cpuTime(w.pid)
		}
		return out
	}
	noopCPU, saleCPU := make([]time.Duration, len(watch)), make([]time.Duration, len(watch))
	charge := func(to, before []time.Duration) {
		for i, d := range cpu() {
			to[i] += d - before[i]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	quantity := cfg.quantity
	if quantity <= 0 {
		quantity = n
	}
	creator, err := mintToken(a, auth.RoleCreator, "loadgen-creator", "loadgen")
	if err != nil {
		return res, err
	}
	// Warm-up (not measured): every buyer opens its connection.
	phase(ctx, tokens, 0, func(tok string, rec func(time.Duration, bool)) {
		code, _, err := call(ctx, client, "GET", base+"/api/noop", tok, "", nil)
		rec(0, err == nil && code == http.StatusNoContent)
	})
	var noopLat, holdLat, coLat latencies
	var noopWall, saleWall, holdWall, coWall time.Duration
	noopStorms := 0
	moreNoop := func() bool { return noopWall < cfg.duration || (cfg.duration > 0 && noopStorms < cfg.storms) }
	moreSale := func() bool { return saleWall < cfg.duration || (cfg.duration > 0 && res.storms < cfg.storms) }
	for first := true; first || moreNoop() || moreSale(); first = false {
		if ctx.Err() != nil {
			return res, fmt.Errorf("run took longer than -timeout %v: %w", cfg.timeout, ctx.Err())
		}
		if first || moreNoop() {
			noopStorms++
			// Noop: two authenticated requests per buyer, like hold + checkout.
			if err := perfCtl(cfg, t.name, "noop", "enable"); err != nil {
				return res, err
			}
			before := cpu()
			noopWall += phaseInto(ctx, &noopLat, tokens, cfg.ramp, func(tok string, rec func(time.Duration, bool)) {
				for i := 0; i < 2; i++ {
					start := time.Now()
					code, _, err := call(ctx, client, "GET", base+"/api/noop", tok, "", nil)
					rec(time.Since(start), err == nil && code == http.StatusNoContent)
				}
			})
			charge(noopCPU, before)
			if err := perfCtl(cfg, t.name, "noop", "disable"); err != nil {
				return res, err
			}
		}
		if first || moreSale() {
			var ctlErr error
			st, err := saleStorm(ctx, cfg, client, base, creator, tokens, quantity, &holdLat, &coLat, func() func() {
				ctlErr = perfCtl(cfg, t.name, "sale", "enable")
				before := cpu()
				return func() {
					charge(saleCPU, before)
					if err := perfCtl(cfg, t.name, "sale", "disable"); ctlErr == nil {
						ctlErr = err
					}
				}
			})
			if err == nil {
				err = ctlErr
			}
			if err != nil {
				return res, err
			}
			saleWall += st.wall
			holdWall += st.holdWall
			coWall += st.coWall
			res.storms++
			res.oversell += st.oversell
			res.invariantBroken = res.invariantBroken || st.invariantBroken
			for k, v := range st.failures {
				res.failures[k] += v
			}
			res.replayed += st.replayed
			res.placed += st.placed
		}
	}
	res.noop = noopLat.stats(noopWall)
	res.noopReqs, res.saleReqs = len(noopLat.d), len(holdLat.d)+len(coLat.d)
	both := latencies{d: append(slices.Clone(holdLat.d), coLat.d...), ok: holdLat.ok + coLat.ok, fail: holdLat.fail + coLat.fail}
	res.sale = both.stats(saleWall)
	res.hold = holdLat.stats(holdWall)
	res.checkout = coLat.stats(coWall)
	for i, w := range watch {
		res.cpuNoop[w.label] = float64(noopCPU[i].Microseconds()) / float64(max(1, len(noopLat.d)))
		res.cpuSale[w.label] = float64(saleCPU[i].Microseconds()) / float64(max(1, len(both.d)))
	}
	return res, nil
}

// stormResult is one sale storm: its wall time (the last answer), the time until the
// last hold and the last checkout answered, and the check of the sale read back.
type stormResult struct {
	wall, holdWall, coWall time.Duration
	oversell               int
	invariantBroken        bool
	failures               map[string]int // failed requests by what failed, e.g. "checkout 503"
	replayed, placed       int            // failed checkouts replayed after the storm; answered an order
}

// failure names what failed for stormResult.failures: the status code, or "error".
func failure(op string, code int, err error) string {
	if err != nil {
		return op + " error"
	}
	return fmt.Sprint(op, " ", code)
}

// saleStorm creates a stream, a product and a sale of quantity units, lets every
// buyer hold one unit and check out (all at once, or spread over cfg.ramp), records
// the latencies in holdLat and coLat and reads the sale back: oversell = sold beyond
// quantity; the invariant is quantity = remaining + held + sold + returned and sold =
// the storm's successful checkouts. A checkout that failed (503 unavailable, or no
// answer) may have placed its order: after the measured storm it is replayed with the
// same Idempotency-Key, as a buyer's client would, until it answers something other
// than 503 (5 tries), and an order it answers counts as checked out.
// measure is called right before the storm's requests start and the function it
// returns right after the last answer (the setup and the check are not measured).
func saleStorm(ctx context.Context, cfg saleConfig, client *http.Client, base, creator string, tokens []string, quantity int, holdLat, coLat *latencies, measure func() func()) (stormResult, error) {
	var res stormResult
	saleID, err := setupSale(ctx, client, base, creator, quantity)
	if err != nil {
		return res, err
	}
	body := fmt.Sprintf(`{"sale_id":%q,"quantity":1}`, saleID)
	keyPrefix := fmt.Sprint("loadgen-", time.Now().UnixNano(), "-") // fresh keys per storm
	var checkedOut atomic.Int64
	var failMu sync.Mutex // guards res.failures and retry
	res.failures = map[string]int{}
	type replay struct{ tok, key string }
	var retry []replay
	fail := func(what string, r *replay) {
		failMu.Lock()
		defer failMu.Unlock()
		res.failures[what]++
		if r != nil {
			retry = append(retry, *r)
		}
	}
	start := time.Now()
	var holdEnd, coEnd atomic.Int64
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i, tok := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			if cfg.ramp > 0 {
				time.Sleep(cfg.ramp * time.Duration(i) / time.Duration(len(tokens)))
			}
			t0 := time.Now()
			code, _, err := call(ctx, client, "POST", base+"/api/cart/items", tok, body, nil)
			holdLat.add(time.Since(t0), err == nil && code == http.StatusCreated)
			storeMax(&holdEnd, int64(time.Since(start)))
			if err != nil || code != http.StatusCreated {
				if code != http.StatusConflict { // sold_out and limit_exceeded are answers
					fail(failure("hold", code, err), nil)
				}
				return
			}
			t1 := time.Now()
			key := fmt.Sprint(keyPrefix, i)
			code, _, err = call(ctx, client, "POST", base+"/api/checkout", tok, "", map[string]string{"Idempotency-Key": key})
			ok := err == nil && code == http.StatusCreated
			coLat.add(time.Since(t1), ok)
			if ok {
				checkedOut.Add(1)
			} else if err != nil || code == http.StatusServiceUnavailable {
				fail(failure("checkout", code, err), &replay{tok, key})
			} else {
				fail(failure("checkout", code, err), nil)
			}
			storeMax(&coEnd, int64(time.Since(start)))
		}()
	}
	measured := measure()
	start = time.Now()
	close(gate)
	wg.Wait()
	res.wall = time.Since(start)
	measured()
	res.holdWall, res.coWall = time.Duration(holdEnd.Load()), time.Duration(coEnd.Load())
	res.replayed = len(retry)
	sem := make(chan struct{}, 64)
	var placed atomic.Int64
	for _, r := range retry {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			for try := 0; try < 5 && ctx.Err() == nil; try++ {
				code, _, err := call(ctx, client, "POST", base+"/api/checkout", r.tok, "", map[string]string{"Idempotency-Key": r.key})
				if err == nil && code != http.StatusServiceUnavailable {
					if code == http.StatusOK || code == http.StatusCreated {
						placed.Add(1)
					}
					return
				}
				time.Sleep(time.Second) // the 503's Retry-After
			}
		}()
	}
	wg.Wait()
	res.placed = int(placed.Load())
	checkedOut.Add(placed.Load())
	var sale struct{ Quantity, Remaining, Held, Sold, Returned int }
	if _, raw, err := call(ctx, client, "GET", base+"/api/sales/"+saleID, "", "", nil); err != nil || json.Unmarshal(raw, &sale) != nil {
		return res, fmt.Errorf("read sale back: %v %s", err, raw)
	}
	res.oversell = max(0, sale.Sold-quantity)
	res.invariantBroken = sale.Remaining+sale.Held+sale.Sold+sale.Returned != sale.Quantity || sale.Sold != int(checkedOut.Load())
	return res, nil
}

// storeMax raises v to x if x is larger.
func storeMax(v *atomic.Int64, x int64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}

func setupSale(ctx context.Context, client *http.Client, base, creator string, quantity int) (string, error) {
	var st, p, s struct{ ID string }
	steps := []struct {
		path string
		body func() string
		out  any
	}{
		{"/api/streams", func() string { return `{"title":"loadgen sale"}` }, &st},
		{"", func() string {
			return fmt.Sprintf(`{"sku":"LG","title":"loadgen","price_cents":100,"currency":"EUR","stock":%d}`, quantity)
		}, &p},
		{"", func() string {
			return fmt.Sprintf(`{"product_id":%q,"price_cents":50,"quantity":%d,"per_user_limit":1,"duration_s":3600}`, p.ID, quantity)
		}, &s},
	}
	for i, step := range steps {
		path := step.path
		switch i {
		case 1:
			path = "/api/streams/" + st.ID + "/products"
		case 2:
			path = "/api/streams/" + st.ID + "/sales"
		}
		code, raw, err := call(ctx, client, "POST", base+path, creator, step.body(), nil)
		if err != nil || code != http.StatusCreated {
			return "", fmt.Errorf("setup POST %s: %d %v %s", path, code, err, raw)
		}
		if err := json.Unmarshal(raw, step.out); err != nil {
			return "", err
		}
	}
	return s.ID, nil
}

// phase runs fn for every token at once and summarises what fn recorded.
func phase(ctx context.Context, tokens []string, ramp time.Duration, fn func(tok string, rec func(time.Duration, bool))) opStats {
	var lat latencies
	wall := phaseInto(ctx, &lat, tokens, ramp, fn)
	return lat.stats(wall)
}

// phaseInto runs fn for every token at once (or spread over ramp), recording into lat,
// and returns the wall time until the last fn returned.
func phaseInto(ctx context.Context, lat *latencies, tokens []string, ramp time.Duration, fn func(tok string, rec func(time.Duration, bool))) time.Duration {
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i, tok := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			if ramp > 0 {
				time.Sleep(ramp * time.Duration(i) / time.Duration(len(tokens)))
			}
			fn(tok, lat.add)
		}()
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	return time.Since(start)
}

// latencies collects request durations; safe for concurrent use.
type latencies struct {
	mu   sync.Mutex // guards d, ok, fail
	d    []time.Duration
	ok   int
	fail int
}

func (l *latencies) add(d time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.d = append(l.d, d)
	if ok {
		l.ok++
	} else {
		l.fail++
	}
}

func (l *latencies) stats(wall time.Duration) opStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := opStats{ok: l.ok, fail: l.fail}
	if len(l.d) == 0 || wall <= 0 {
		return s
	}
	slices.Sort(l.d)
	s.p50 = l.d[len(l.d)/2]
	s.p99 = l.d[min(len(l.d)-1, len(l.d)*99/100)]
	s.perSec = float64(len(l.d)) / wall.Seconds()
	s.okPerSec = float64(l.ok) / wall.Seconds()
	return s
}
