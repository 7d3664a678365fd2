package live

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/livecart/livecart/cart"
	"github.com/redis/go-redis/v9"
)

// resumeQuery is the query of a client resuming after its event at seq, whose ts it
// sends as since_ts.
func resumeQuery(seq int64, ts string) string {
	return "since=" + strconv.FormatInt(seq, 10) + "&since_ts=" + url.QueryEscape(ts)
}

// TestResumeAfterRedisLostTheLogGetsSnapshot: a viewer disconnected at seq 5 (its last
// event's ts in hand); then Redis loses the stream's log (FLUSHALL; or a kill -9 and a
// restart from an RDB saved at seq 3) and the new log's seq passes 5 (seq 7). The
// viewer resuming with since=5&since_ts=<its ts> must get a fresh snapshot at the new
// log's seq (with its event's ts as seq_ts), not the new log's events 6 and 7, which
// are not the ones it missed: on the node that followed the loss (its room restarted)
// and on one that starts following the stream then. Step two: resuming from that
// snapshot's seq and seq_ts, after two more events, gets exactly those events.
// (Before: since_ts was not read, and the viewer got the new events 6 and 7 on top of
// the old log's state.)
func TestResumeAfterRedisLostTheLogGetsSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name  string
		saved int64 // events in the RDB the Redis restarts from (0: FLUSHALL)
	}{
		{"flushall", 0},
		{"older-rdb", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := startRedisIn(t, dir)
			prefix := "resumelog-" + uuid.NewString()[:8]
			a, _ := privateRedisNode(t, r, prefix, "node-a")
			b, _ := privateRedisNode(t, r, prefix, "node-b")
			direct := redis.NewClient(&redis.Options{Addr: r.addr()})
			t.Cleanup(func() { direct.Close() })
			ctx := context.Background()
			sid := uuid.NewString()

			stay := b.dial(t, sid, "") // connected throughout, on node B
			gone := a.dial(t, sid, "") // disconnects at seq 5
			for _, v := range []*client{stay, gone} {
				if m := v.next(t); m.Type != EventSnapshot || m.Seq != 0 || m.SeqTs != "" {
					t.Fatalf("first frame: %s seq %d seq_ts %q, want snapshot 0 without seq_ts", m.Type, m.Seq, m.SeqTs)
				}
			}
			var lastTs string
			for i := int64(1); i <= 5; i++ {
				announce(a.hub, sid, fmt.Sprint("old", i))
				m := gone.nextOf(t, EventAnnounce)
				if m.Seq != i {
					t.Fatalf("before: seq %d, want %d", m.Seq, i)
				}
				lastTs = m.TS
				if m2 := stay.nextOf(t, EventAnnounce); m2.Seq != i {
					t.Fatalf("before (node B): seq %d, want %d", m2.Seq, i)
				}
				if i == tc.saved {
					if err := direct.Save(ctx).Err(); err != nil {
						t.Fatal(err)
					}
				}
			}
			gone.ws.Close()

			if tc.saved > 0 {
				r.restartFromDir(t, dir) // kill -9; loads the RDB saved at seq 3
				if n, err := direct.Get(ctx, prefix+":live:{"+sid+"}:seq").Int64(); err != nil || n != tc.saved {
					t.Fatalf("seq after the restart: %d, %v; want %d (the RDB's)", n, err, tc.saved)
				}
			} else if err := direct.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			for i := tc.saved + 1; i <= 7; i++ {
				announce(a.hub, sid, fmt.Sprint("new", i))
			}
			// Node B follows the new log: a snapshot, then its events up to seq 7. When
			// node B's subscription comes back after node A announced all of them, the
			// snapshot is at seq 7 itself (with seq 7's ts) and no event follows.
			var ts7 string
			sawSnap := false
			for ts7 == "" {
				switch m := stay.next(t); {
				case m.Type == EventSnapshot:
					sawSnap = true
					if m.Seq == 7 {
						if m.SeqTs == "" {
							t.Fatal("node B's snapshot at seq 7 has no seq_ts")
						}
						ts7 = m.SeqTs
					}
				case m.Type == EventAnnounce && m.Seq == 7:
					if m.Text != "new7" {
						t.Fatalf("node B at seq 7: %q, want new7", m.Text)
					}
					ts7 = m.TS
				}
			}
			if !sawSnap {
				t.Fatal("node B's viewer got no snapshot after the loss")
			}

			for _, node := range []struct {
				name string
				ts   *testServer
			}{{"followed the loss", b}, {"follows anew", a}} {
				back := node.ts.dial(t, sid, resumeQuery(5, lastTs))
				m := back.next(t)
				if m.Type != EventSnapshot || m.Seq != 7 || m.SeqTs != ts7 {
					t.Fatalf("%s: resuming after seq 5 of the lost log: got %s seq %d %q seq_ts %q, want snapshot 7 with seq_ts %q",
						node.name, m.Type, m.Seq, m.Text, m.SeqTs, ts7)
				}
				back.ws.Close()
			}

			// Step two: the snapshot's seq and seq_ts resume on the new log.
			for i := int64(8); i <= 9; i++ {
				announce(a.hub, sid, fmt.Sprint("new", i))
			}
			for want := int64(8); want <= 9; want++ {
				if m := stay.nextOf(t, EventAnnounce); m.Seq != want {
					t.Fatalf("node B: seq %d, want %d", m.Seq, want)
				}
			}
			again := a.dial(t, sid, resumeQuery(7, ts7))
			for want := int64(8); want <= 9; want++ {
				if m := again.next(t); m.Type != EventAnnounce || m.Seq != want || m.Text != fmt.Sprint("new", want) {
					t.Fatalf("resuming from the snapshot: got %s seq %d %q, want announce %d new%d", m.Type, m.Seq, m.Text, want, want)
				}
			}
		})
	}
}

// startRedisIn starts a private redis-server keeping its RDB file in dir (saved only
// on SAVE).
func startRedisIn(t *testing.T, dir string) *hangableRedis {
	t.Helper()
	r := startHangableRedis(t) // its port, free
	r.restartFromDir(t, dir)
	return r
}

// restartFromDir kills the redis-server (kill -9: nothing saved) and starts it again
// on its port from the RDB file in dir (empty without one).
func (r *hangableRedis) restartFromDir(t *testing.T, dir string) {
	t.Helper()
	r.cmd.Process.Signal(sigCont)
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no")
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.addr()})
	defer rdb.Close()
	for i := 0; rdb.Ping(context.Background()).Err() != nil; i++ {
		if i > 200 {
			t.Fatal("restarted redis-server did not answer")
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// copyFile copies the file at from to to.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestResumeWithSinceTs on the embedded node's bus: since_ts of the event at since
// resumes from history (nothing when since is the last seq); another ts, or since 0
// with since_ts, gets a snapshot (its seq_ts the ts of the event at its seq); without
// since_ts the resume is as before. Then the node restarts from an older copy of its
// data file (the reservation of seqs goes back) and its new events pass the seq a
// viewer had: resuming with that viewer's since and since_ts gets a snapshot, not the
// new process's events that reuse those seqs.
func TestResumeWithSinceTs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "livecart.db")
	old := filepath.Join(dir, "older.db")
	st, err := cart.OpenBolt(file)
	if err != nil {
		t.Fatal(err)
	}
	ts1 := newTestServer(t, Config{Bus: memoryBusOn(st), ViewersInterval: time.Hour})
	sid := uuid.NewString()
	v := ts1.dial(t, sid, "")
	v.nextOf(t, EventSnapshot)
	tsOf := map[int64]string{}
	for i := int64(1); i <= 5; i++ {
		announce(ts1.hub, sid, fmt.Sprint("e", i))
		m := v.nextOf(t, EventAnnounce)
		tsOf[m.Seq] = m.TS
	}

	for _, tc := range []struct {
		name  string
		query string
		want  []int64 // the seqs of the announces sent; nil: a snapshot at 5
	}{
		{"matching ts", resumeQuery(3, tsOf[3]), []int64{4, 5}},
		{"matching ts, up to date", resumeQuery(5, tsOf[5]), []int64{}},
		{"another ts", resumeQuery(3, tsOf[2]), nil},
		{"empty ts", resumeQuery(3, ""), nil},
		{"since 0", resumeQuery(0, ""), nil},
		{"no since_ts", "since=3", []int64{4, 5}},
	} {
		c := ts1.dial(t, sid, tc.query)
		if tc.want == nil {
			if m := c.next(t); m.Type != EventSnapshot || m.Seq != 5 || m.SeqTs != tsOf[5] {
				t.Fatalf("%s: got %s seq %d seq_ts %q, want snapshot 5 with seq_ts %q", tc.name, m.Type, m.Seq, m.SeqTs, tsOf[5])
			}
		}
		for _, want := range tc.want {
			if m := c.next(t); m.Type != EventAnnounce || m.Seq != want {
				t.Fatalf("%s: got %s seq %d, want announce %d", tc.name, m.Type, m.Seq, want)
			}
		}
		c.send(t, map[string]string{"type": "ping"})
		if m := c.next(t); m.Type != EventPong {
			t.Fatalf("%s: got %s seq %d after the resume, want pong (nothing else)", tc.name, m.Type, m.Seq)
		}
		c.ws.Close()
	}

	// The data file as it was at seq 5 (seqs reserved up to 1,024), then a restarted
	// node's events 1,026 to 1,028 (seqs reserved up to 2,049).
	v.ws.Close()
	ts1.hub.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	copyFile(t, file, old)
	st, err = cart.OpenBolt(file)
	if err != nil {
		t.Fatal(err)
	}
	bus := memoryBusOn(st)
	var rec Record
	for range 3 {
		if rec, err = bus.Publish(context.Background(), sid, EventAnnounce, []byte(`"ts":"2026-12-06T00:00:00Z","text":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	gone := rec.Seq // the seq a viewer of that process had, and its ts
	goneTs := "2026-12-06T00:00:00Z"

	// The older file restored: the next process's seqs start at 1,026 again.
	copyFile(t, old, file)
	st, err = cart.OpenBolt(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ts2 := newTestServer(t, Config{Bus: memoryBusOn(st), ViewersInterval: time.Hour})
	w := ts2.dial(t, sid, "")
	start := w.nextOf(t, EventSnapshot).Seq
	if start >= gone {
		t.Fatalf("restored: the stream starts at seq %d, want below %d (the older file's reservation)", start, gone)
	}
	var newTs string
	for i := start + 1; i <= gone+1; i++ {
		announce(ts2.hub, sid, fmt.Sprint("n", i))
		newTs = w.nextOf(t, EventAnnounce).TS
	}
	back := ts2.dial(t, sid, resumeQuery(gone, goneTs))
	if m := back.next(t); m.Type != EventSnapshot || m.Seq != gone+1 || m.SeqTs != newTs {
		t.Fatalf("resuming after seq %d of the lost process: got %s seq %d %q, want snapshot %d with seq_ts %q", gone, m.Type, m.Seq, m.Text, gone+1, newTs)
	}
}
