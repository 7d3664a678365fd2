package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/livecart/livecart/web/auth"
)

// runPings measures what the pages' app-level pings cost the server: N viewers on one
// quiet stream, then rounds of a quiet phase (no pings) and a ping phase (each viewer
// sends {"type":"ping"} every -every, spread evenly), the server's CPU read from /proc
// of -server-pid over each phase. The cost of a ping is the ping phase's CPU minus the
// quiet phase's, over the pongs received.
func runPings(args []string) error {
	var c wsConfig
	fs := flag.NewFlagSet("pings", flag.ContinueOnError)
	fs.StringVar(&c.server, "server", "http://127.0.0.1:8080", "server base URL")
	fs.StringVar(&c.secret, "secret", os.Getenv("LIVECART_AUTH_SECRET"), "the server's auth secret (mints tokens; default $LIVECART_AUTH_SECRET)")
	fs.IntVar(&c.viewers, "viewers", 3000, "websocket viewers")
	every := fs.Duration("every", 7*time.Second, "each viewer's ping interval in the ping phase (0: no ping phase)")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "length of each phase")
	rounds := fs.Int("rounds", 3, "quiet/ping rounds")
	pid := fs.Int("server-pid", 0, "the server's process id (CPU from /proc; required)")
	fs.IntVar(&c.dialConc, "dial-concurrency", 64, "connections opened at once")
	heartbeat := fs.Bool("heartbeat", false, "viewers ask for heartbeats (?heartbeat=1): the quiet phases then carry the server's heartbeats")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.secret == "" {
		return errors.New("-secret (or LIVECART_AUTH_SECRET) is required to mint tokens")
	}
	if *pid <= 0 {
		return errors.New("-server-pid is required")
	}
	c.reader = "gorilla"
	if *heartbeat {
		c.query = "?heartbeat=1"
	}
	c.serverPIDs = []int{*pid}
	raiseFileLimit()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(2**rounds+2)*c.duration+2*time.Minute)
	defer cancel()
	r := newWSRun(c)
	r.owner = r.token(auth.RoleCreator, "loadgen-creator")
	var st struct{ ID string }
	if err := r.api(ctx, "POST", "/api/streams", r.owner, map[string]string{"title": "loadgen pings"}, &st); err != nil {
		return err
	}
	r.sid = st.ID
	viewers, err := r.connect(ctx)
	defer closeViewers(viewers)
	if err != nil {
		return err
	}
	var pongs, others atomic.Int64
	var wg sync.WaitGroup
	for _, v := range viewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, b, err := v.conn.ReadMessage()
				if err != nil {
					return
				}
				if strings.Contains(string(b), `"type":"pong"`) {
					pongs.Add(1)
				} else {
					others.Add(1)
				}
			}
		}()
	}
	time.Sleep(3 * time.Second) // viewer counts settle
	fmt.Printf("pings: %d viewers on stream %s, each pinging every %v in the ping phases; phases of %v\n", len(viewers), r.sid, *every, c.duration)
	var perPing []float64
	for k := range *rounds {
		others.Store(0)
		q0, t0 := cpuTime(*pid), time.Now()
		time.Sleep(c.duration)
		q1, t1 := cpuTime(*pid), time.Now()
		quietRate := float64(q1-q0) / float64(t1.Sub(t0))
		quietOthers := others.Load()
		if *every <= 0 {
			fmt.Printf("round %d: quiet %.1f ms CPU/s, %d frames received (%.0f/s)\n", k+1, quietRate*1e3, quietOthers, float64(quietOthers)/t1.Sub(t0).Seconds())
			perPing = append(perPing, quietRate*1e3)
			continue
		}

		p0 := pongs.Load()
		c0, t2 := cpuTime(*pid), time.Now()
		sent := pingAll(ctx, viewers, *every, c.duration)
		time.Sleep(500 * time.Millisecond) // the last pongs
		c1, t3 := cpuTime(*pid), time.Now()
		got := pongs.Load() - p0
		extra := float64(c1-c0) - quietRate*float64(t3.Sub(t2))
		us := extra / float64(got) / 1e3
		perPing = append(perPing, us)
		fmt.Printf("round %d: quiet %.1f ms CPU/s (%d other frames); pinging %d sent, %d pongs, %.0f/s, %.1f ms CPU/s → %.2f µs server CPU per ping\n",
			k+1, quietRate*1e3, quietOthers, sent, got, float64(got)/t3.Sub(t2).Seconds(),
			float64(c1-c0)/float64(t3.Sub(t2))*1e3, us)
	}
	slices.Sort(perPing)
	unit := "µs per ping"
	if *every <= 0 {
		unit = "ms CPU/s quiet"
	}
	fmt.Printf("median %.2f %s (rounds: %s)\n", perPing[len(perPing)/2], unit, joinFloats(perPing, "%.2f", " "))
	closeViewers(viewers)
	wg.Wait()
	return nil
}

// pingAll sends each viewer a ping every `every` for d, viewer i at offset i·every/n.
func pingAll(ctx context.Context, viewers []*wsViewer, every, d time.Duration) int {
	ping := []byte(`{"type":"ping"}`)
	n := len(viewers)
	step := every / time.Duration(n)
	start := time.Now()
	sent := 0
	for next := 0; ctx.Err() == nil; {
		due := int(time.Since(start) / step)
		if time.Since(start) >= d {
			break
		}
		for ; next <= due; next++ {
			if viewers[next%n].conn.WriteMessage(websocket.TextMessage, ping) == nil {
				sent++
			}
		}
		time.Sleep(time.Millisecond)
	}
	return sent
}
