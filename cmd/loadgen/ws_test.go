package main

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"testing"
)

// TestParseEvent checks the in-place parse against a plain search of every field from
// the start of the frame (the reader's checks must not get weaker for being cheaper).
func TestParseEvent(t *testing.T) {
	plain := func(b []byte, key string) int64 { // the old intAfter
		i := bytes.Index(b, []byte(key))
		if i < 0 {
			return -1
		}
		b = b[i+len(key):]
		j := 0
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		n, err := strconv.ParseInt(string(b[:j]), 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	frames := []string{
		`{"type":"announce","seq":42,"ts":"2026-12-02T00:46:07.123456789Z","text":"t=1764636367123456789;k=17"}`,
		`{"type":"announce","seq":1,"ts":"2026-12-02T00:46:07Z","text":"t=5;k=0"}`,
		`{"type":"announce","seq":99999999999999999999,"ts":"x","text":"t=5;k=0"}`, // seq overflows
		`{"type":"announce","seq":7,"ts":"x","text":"hello"}`,                      // not ours: no t=, no k
		`{"type":"announce","ts":"x","text":"t=12;k=3"}`,                           // no seq
		`{"type":"announce","seq":,"ts":"x","text":"t=12;k=3"}`,                    // empty seq
		`{"type":"unpin","seq":77,"ts":"x","product_id":"p1"}`,
		`{"type":"pin","seq":76,"ts":"x","product":{"id":"p1"}}`,
		`{"type":"pong","ts":"x"}`,
		`{"type":"chat","seq":5,"ts":"x","text":"\"seq\":9 t=1;k=2"}`,
		`{"type":"snapshot","seq":0,"ts":"x"}`,
		``,
	}
	for _, f := range frames {
		b := []byte(f)
		got := parseEvent(b)
		want := event{seq: plain(b, `"seq":`), sentAt: -1, k: -1}
		switch {
		case bytes.HasPrefix(b, []byte(`{"type":"announce"`)):
			want.kind, want.sentAt, want.k = evAnnounce, plain(b, `"text":"t=`), plain(b, `;k=`)
		case bytes.HasPrefix(b, []byte(`{"type":"unpin"`)):
			want.kind = evUnpin
		}
		if got != want {
			t.Errorf("%s:\n got %+v\nwant %+v", f, got, want)
		}
	}
}

// TestRecordCounts feeds record a run of frames: gaps, duplicates, latencies and the
// per-event tallies.
func TestRecordCounts(t *testing.T) {
	r := newWSRun(wsConfig{rate: 10, duration: 1e9}) // 10 events
	v := &wsViewer{last: 3}
	ann := func(seq, k int, sent int64) []byte {
		return fmt.Appendf(nil, `{"type":"announce","seq":%d,"ts":"x","text":"t=%d;k=%d"}`, seq, sent, k)
	}
	r.record(r.tallies[0], v, ann(4, 0, 1000), arrival{app: 3000})
	r.record(r.tallies[0], v, ann(6, 1, 1000), arrival{app: 5000}) // seq 5 missing
	r.record(r.tallies[len(r.tallies)-1], v, ann(6, 1, 1000), arrival{app: 9000})
	r.record(r.tallies[0], v, []byte(`{"type":"pong","ts":"x"}`), arrival{app: 9000})
	if v.gaps != 1 || v.dups != 1 || v.last != 6 {
		t.Fatalf("gaps %d dups %d last %d, want 1 1 6", v.gaps, v.dups, v.last)
	}
	var lat []uint32
	for _, t := range r.tallies {
		lat = append(lat, t.lat...)
	}
	slices.Sort(lat)
	if len(lat) != 3 || lat[0] != 2 || lat[1] != 4 || lat[2] != 8 {
		t.Fatalf("latencies %v µs, want [2 4 8]", lat)
	}
	if r.received(0) != 1 || r.received(1) != 2 || r.lastViewer(1, false) != 8000 || r.lastViewer(0, false) != 2000 {
		t.Fatalf("received %d, %d; last viewer of k=1 %d ns", r.received(0), r.received(1), r.lastViewer(1, false))
	}
}

// TestRecordSocketStamps: with stamps, record keeps the latencies to the socket's
// stamp and the reader's delay beside the read-time ones; a frame without a stamp
// counts in the read-time figures only, and an unpin round keeps its place.
func TestRecordSocketStamps(t *testing.T) {
	r := newWSRun(wsConfig{rate: 10, duration: 1e9, reader: "epoll", sockTime: true, unpins: 2})
	v := &wsViewer{last: 3}
	ann := func(seq, k int, sent int64) []byte {
		return fmt.Appendf(nil, `{"type":"announce","seq":%d,"ts":"x","text":"t=%d;k=%d"}`, seq, sent, k)
	}
	tl := r.tallies[0]
	r.record(tl, v, ann(4, 0, 1000), arrival{app: 9000, sock: 3000})
	r.record(tl, v, ann(5, 1, 1000), arrival{app: 6000, sock: 5000})
	r.record(tl, v, ann(6, 1, 1000), arrival{app: 7000}) // no stamp
	r.unpinAt.Store(10_000)
	r.record(tl, v, []byte(`{"type":"unpin","seq":7,"ts":"x"}`), arrival{app: 20_000}) // no stamp
	r.record(tl, v, []byte(`{"type":"unpin","seq":8,"ts":"x"}`), arrival{app: 30_000, sock: 14_000})
	if !slices.Equal(tl.lat, []uint32{8, 5, 6}) || !slices.Equal(tl.sockLat, []uint32{2, 4}) || !slices.Equal(tl.readDelay, []uint32{6, 1}) {
		t.Fatalf("latencies %v, to the socket %v, reader's delay %v µs; want [8 5 6], [2 4], [6 1]", tl.lat, tl.sockLat, tl.readDelay)
	}
	r.record(r.tallies[len(r.tallies)-1], &wsViewer{}, ann(5, 1, 1000), arrival{app: 3500, sock: 3000}) // another viewer, earlier
	if r.lastViewer(0, true) != 2000 || r.lastViewer(1, true) != 4000 || r.lastViewer(1, false) != 6000 {
		t.Fatalf("last viewer: k=0 socket %d, k=1 socket %d, read %d ns; want 2000 4000 6000", r.lastViewer(0, true), r.lastViewer(1, true), r.lastViewer(1, false))
	}
	if r.sockFirstViewer(0) != 2000 || r.sockFirstViewer(1) != 2000 || r.sockFirstViewer(2) != 0 {
		t.Fatalf("first viewer's socket: k=0 %d, k=1 %d, k=2 %d ns; want 2000 2000 0", r.sockFirstViewer(0), r.sockFirstViewer(1), r.sockFirstViewer(2))
	}
	if !slices.Equal(v.unpinLat, []uint32{10, 20}) || !slices.Equal(v.unpinSockLat, []uint32{0, 4}) {
		t.Fatalf("unpin %v, to the socket %v µs; want [10 20], [0 4]", v.unpinLat, v.unpinSockLat)
	}
	if got := r.unpinLast([]*wsViewer{v, {unpinSockLat: []uint32{7}}}, func(v *wsViewer) []uint32 { return v.unpinSockLat }); !slices.Equal(got, []uint32{7, 4}) {
		t.Fatalf("unpin to the last socket per round: got %v, want [7 4]", got)
	}
}

// TestEventsOut: -events-out keeps each announce event's latencies apart (over every
// reader's tally) and the p99 per second of publishing groups the events by their
// send time.
func TestEventsOut(t *testing.T) {
	r := newWSRun(wsConfig{rate: 10, duration: 2e9, viewers: 4, reader: "epoll", sockTime: true, eventsOut: "x"}) // 20 events
	ann := func(k int, sent int64) []byte {
		return fmt.Appendf(nil, `{"type":"announce","seq":%d,"ts":"x","text":"t=%d;k=%d"}`, k+1, sent, k)
	}
	const s = int64(1e9)
	last := r.tallies[len(r.tallies)-1]
	// event 0 sent at 0: 1, 3 ms by the read (two readers), 1 ms at the socket
	r.record(r.tallies[0], &wsViewer{}, ann(0, 10*s), arrival{app: 10*s + 1e6, sock: 10*s + 1e6})
	r.record(last, &wsViewer{}, ann(0, 10*s), arrival{app: 10*s + 3e6})
	// event 12 sent 1.2 s later: 50 ms
	r.record(last, &wsViewer{}, ann(12, 11*s+2e8), arrival{app: 11*s + 2e8 + 5e7, sock: 11*s + 2e8 + 4e7})
	rows := eventRows(r.tallies)
	if len(rows) != 2 || rows[0].k != 0 || rows[0].n != 2 || rows[0].read != [4]uint32{1000, 1000, 1000, 3000} || rows[0].sockSeen != 1 || rows[0].sock[3] != 1000 {
		t.Fatalf("rows: got %+v, want event 0 with 2 deliveries, 1 and 3 ms, 1 stamped at 1 ms", rows)
	}
	if rows[1].k != 12 || rows[1].read[2] != 50000 || rows[1].sock[2] != 40000 {
		t.Fatalf("event 12: got %+v, want 50 ms read, 40 ms socket", rows[1])
	}
	read, sock := perSecond(r.tallies, rows)
	if !slices.Equal(read, []uint32{1000, 50000}) || !slices.Equal(sock, []uint32{1000, 40000}) {
		t.Fatalf("p99 per second: got %v read, %v socket; want [1000 50000], [1000 40000] µs", read, sock)
	}
}
