package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v2"

	"github.com/livecart/livecart/stream/rtctest"
)

func TestParseMediaFlagsViewerSRTP(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want []dtls.SRTPProtectionProfile
		ok   bool
	}{
		{"default", nil, true},
		{"sha1", []dtls.SRTPProtectionProfile{dtls.SRTP_AES128_CM_HMAC_SHA1_80}, true},
		{"gcm", nil, false},
	} {
		c, err := parseMediaFlags([]string{"-token", "t", "-viewer-srtp", tc.arg})
		if (err == nil) != tc.ok {
			t.Fatalf("-viewer-srtp %s: error %v, want ok=%v", tc.arg, err, tc.ok)
		}
		if len(c.viewerSRTP) != len(tc.want) || (len(tc.want) > 0 && c.viewerSRTP[0] != tc.want[0]) {
			t.Errorf("-viewer-srtp %s: profiles %v, want %v", tc.arg, c.viewerSRTP, tc.want)
		}
	}
}

// Loss is matched by payload: a packet of the window still in flight when it closes
// counts once it arrives, a retransmission in time counts, a packet arriving later
// than maxLate after its sending does not, a duplicate counts once.
func TestMatchPayloads(t *testing.T) {
	end := time.Unix(100, 0)
	at := func(d time.Duration) int64 { return end.Add(d).UnixNano() }
	ms := time.Millisecond
	// The window is stamps 11..15 (from 10, to 15).
	recs := [][]rtctest.Arrival{
		{ // all five, 15 in flight at the end, 14 twice, 9 and 16 outside the window
			{Stamp: 9, Video: true, Seq: 1, At: at(-50 * ms), Latency: 5 * ms},
			{Stamp: 11, Video: true, Seq: 2, At: at(-40 * ms), Latency: 5 * ms},
			{Stamp: 12, Seq: 70, At: at(-30 * ms), Latency: 5 * ms},
			{Stamp: 13, Video: true, Seq: 3, At: at(-20 * ms), Latency: 5 * ms},
			{Stamp: 14, Video: true, Seq: 4, At: at(-10 * ms), Latency: 5 * ms},
			{Stamp: 14, Video: true, Seq: 4, At: at(-5 * ms), Latency: 10 * ms},
			{Stamp: 15, Video: true, Seq: 5, At: at(8 * ms), Latency: 12 * ms},
			{Stamp: 16, Video: true, Seq: 6, At: at(9 * ms), Latency: 5 * ms},
		},
		{ // 13 lost (a hole in its sequence numbers), 14 resent in time, 15 too late
			{Stamp: 11, Video: true, Seq: 2, At: at(-40 * ms), Latency: 5 * ms},
			{Stamp: 12, Seq: 70, At: at(-30 * ms), Latency: 5 * ms},
			{Stamp: 14, Video: true, Seq: 4, At: at(200 * ms), Latency: 215 * ms},
			{Stamp: 15, Video: true, Seq: 5, At: at(1200 * ms), Latency: 1204 * ms},
		},
	}
	pl := matchPayloads(recs, 10, 15, end, time.Second)
	want := payloadLoss{span: 5, viewers: 2, missing: 2, worst: 2, tooLate: 1, bySome: 2, video: 2,
		holes: 1, dups: 1, afterEnd: 2, lastAfterEnd: 200 * ms}
	pl.sample = nil
	if !reflect.DeepEqual(pl, want) {
		t.Errorf("matchPayloads:\n got %+v\nwant %+v", pl, want)
	}
	if got := pl.pct(); got != 20 {
		t.Errorf("loss %v %%, want 20 %% (2 of 10)", got)
	}
	if got := pl.worstPct(); got != 40 {
		t.Errorf("worst viewer %v %%, want 40 %% (2 of 5)", got)
	}
	// A stamp no viewer got is counted apart: lost before the fan-out.
	pl = matchPayloads([][]rtctest.Arrival{recs[0][:2], recs[1][:1]}, 10, 12, end, time.Second)
	if pl.byAll != 1 || pl.bySome != 0 || pl.missing != 2 {
		t.Errorf("stamp 12 lost for both: byAll %d bySome %d missing %d, want 1 0 2", pl.byAll, pl.bySome, pl.missing)
	}
}

// Scripts read the rows by field position (docs/bench-all.sh's readers: a row is a line
// starting with spaces and a number): the fields before the socket latencies keep their
// places, the socket latencies come last, "-" when the viewers' sockets kept no times.
func TestMediaRowFields(t *testing.T) {
	ms := time.Millisecond
	r := mediaResult{n: 200, pacing: 2.5, srvCPU: 44.5, srvRSS: 120, rssPerViewer: 0.18, genCPU: 90, pktsPerSec: 54400,
		latP50: 7100 * time.Microsecond, latP99: 25 * ms, kfP50: 150 * ms, kfP99: 700 * ms, failed: 1,
		sockP50: 3200 * time.Microsecond, sockP99: 12 * ms, sockSamples: 1000}
	head := strings.Fields(mediaHeader)
	for _, c := range []struct {
		r    mediaResult
		want []string
	}{
		{r, []string{"200", "2.5", "44.5", "120.0M", "0.18M", "90.0", "54400", "0.000", "0.000",
			"7.1ms", "25.0ms", "150ms", "700ms", "1", "3.2ms", "12.0ms"}},
		{func() mediaResult { r := r; r.sockSamples = 0; return r }(), []string{"200", "2.5", "44.5", "120.0M", "0.18M", "90.0",
			"54400", "0.000", "0.000", "7.1ms", "25.0ms", "150ms", "700ms", "1", "-", "-"}},
	} {
		row := c.r.String()
		if got := strings.Fields(row); !reflect.DeepEqual(got, c.want) {
			t.Errorf("row %q:\n got fields %q\nwant %q", row, got, c.want)
		}
		if !strings.HasPrefix(row, "   200 ") {
			t.Errorf("row %q does not start with spaces and N", row)
		}
		if len(head) != len(c.want) {
			t.Errorf("header %q has %d fields, rows %d", mediaHeader, len(head), len(c.want))
		}
	}
	if head[9] != "lat_p50" || head[10] != "lat_p99" || head[13] != "fail" || head[14] != "sock_p50" || head[15] != "sock_p99" {
		t.Errorf("header %q: lat_p50, lat_p99, fail, sock_p50, sock_p99 not at fields 10, 11, 14, 15, 16", mediaHeader)
	}
}
