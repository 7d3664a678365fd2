package main

// Where a media run's lost packets went: every viewer records the publisher's stamp
// sequence of each packet it gets (rtctest.Viewer.Record), so a packet sent in the
// measured window is matched by payload; the kernel's UDP drop counters of the server's
// and the load generator's sockets and the relay's own drop counters (/metrics) are
// read at both ends of the window.

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/livecart/livecart/stream/rtctest"
)

// udpCounters is one reading of the kernel's UDP counters.
type udpCounters struct {
	snmp      map[string]int64 // /proc/net/snmp's Udp line
	srvDrops  int64            // drops of the server's UDP sockets (/proc/net/udp{,6})
	selfDrops int64            // drops of this process's UDP sockets
	relay     map[string]float64
}

func readUDPCounters(serverPID int, metricsURL string) udpCounters {
	c := udpCounters{snmp: map[string]int64{}, relay: map[string]float64{}}
	if raw, err := os.ReadFile("/proc/net/snmp"); err == nil {
		var names []string
		for _, l := range strings.Split(string(raw), "\n") {
			f := strings.Fields(l)
			if len(f) < 2 || f[0] != "Udp:" {
				continue
			}
			if names == nil {
				names = f[1:]
				continue
			}
			for i, v := range f[1:] {
				n, _ := strconv.ParseInt(v, 10, 64)
				if i < len(names) {
					c.snmp[names[i]] = n
				}
			}
		}
	}
	srv, self := socketInodes(serverPID), socketInodes(os.Getpid())
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 13 || fl[0] == "sl" {
				continue
			}
			drops, _ := strconv.ParseInt(fl[len(fl)-1], 10, 64)
			switch inode := fl[9]; {
			case srv[inode]:
				c.srvDrops += drops
			case self[inode]:
				c.selfDrops += drops
			}
		}
		fh.Close()
	}
	if metricsURL != "" {
		if resp, err := http.Get(metricsURL); err == nil {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				l := sc.Text()
				if !strings.HasPrefix(l, "livecart_media_") {
					continue
				}
				if f := strings.Fields(l); len(f) == 2 {
					v, _ := strconv.ParseFloat(f[1], 64)
					c.relay[f[0]] = v
				}
			}
			resp.Body.Close()
		}
	}
	return c
}

// socketInodes returns the inodes of pid's sockets (none for pid 0).
func socketInodes(pid int) map[string]bool {
	m := map[string]bool{}
	if pid <= 0 {
		return m
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return m
	}
	for _, e := range ents {
		l, err := os.Readlink(dir + "/" + e.Name())
		if err == nil && strings.HasPrefix(l, "socket:[") {
			m[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	return m
}

// payloadLoss is what the viewers' recordings say about the stamps (from, to].
type payloadLoss struct {
	span, viewers int
	missing       int // viewer-packets never received, or received over maxLate after sent
	worst         int // the most one viewer missed
	tooLate       int // of missing: received, but over maxLate after sent
	byAll         int // stamps no viewer got
	bySome        int // viewer-packets missing of stamps some other viewer got
	video, audio  int // of bySome, by kind
	holes         int // RTP sequence numbers the viewers never got inside their window's span
	dups          int // packets received more than once
	afterEnd      int // received after the window closed (in flight then), in time
	lastAfterEnd  time.Duration
	sample        []string
}

// matchPayloads matches what the viewers recorded against the stamps the publisher
// sent in (from, to]; end is when the window closed.
func matchPayloads(recs [][]rtctest.Arrival, from, to uint32, end time.Time, maxLate time.Duration) payloadLoss {
	pl := payloadLoss{span: int(to - from), viewers: len(recs)}
	if pl.span <= 0 {
		return pl
	}
	missedBy := make([]int, pl.span) // viewers that never got stamp from+1+i
	kind := make([]int8, pl.span)    // 1 video, -1 audio, 0 unknown
	endNs := end.UnixNano()
	for _, r := range recs {
		got := make([]bool, pl.span)
		minSeq, maxSeq := [2]int64{1 << 62, 1 << 62}, [2]int64{-1 << 62, -1 << 62}
		seqs := [2]map[int64]bool{{}, {}}
		late := 0
		for _, a := range r {
			if a.Stamp <= from || a.Stamp > to {
				continue
			}
			i := int(a.Stamp - from - 1)
			k := 0
			if a.Video {
				k, kind[i] = 1, 1
			} else {
				kind[i] = -1
			}
			minSeq[k], maxSeq[k] = min(minSeq[k], a.Seq), max(maxSeq[k], a.Seq)
			seqs[k][a.Seq] = true
			if got[i] {
				pl.dups++
				continue
			}
			if a.Latency > maxLate {
				late++ // counted missing unless a copy comes in time
				continue
			}
			got[i] = true
			if a.At > endNs {
				pl.afterEnd++
				pl.lastAfterEnd = max(pl.lastAfterEnd, time.Duration(a.At-endNs))
			}
		}
		missing := 0
		for i, g := range got {
			if !g {
				missing++
				missedBy[i]++
			}
		}
		for k := range 2 {
			if maxSeq[k] >= minSeq[k] {
				pl.holes += int(maxSeq[k]-minSeq[k]+1) - len(seqs[k])
			}
		}
		pl.tooLate += min(late, missing)
		pl.missing += missing
		pl.worst = max(pl.worst, missing)
	}
	for i, m := range missedBy {
		switch {
		case m == 0:
		case m == len(recs):
			pl.byAll++
		default:
			pl.bySome += m
			switch kind[i] {
			case 1:
				pl.video += m
			case -1:
				pl.audio += m
			}
			if len(pl.sample) < 30 {
				pl.sample = append(pl.sample, fmt.Sprintf("%d:%d", from+1+uint32(i), m))
			}
		}
	}
	return pl
}

func (pl payloadLoss) pct() float64 {
	if pl.span == 0 || pl.viewers == 0 {
		return 0
	}
	return 100 * float64(pl.missing) / float64(pl.span*pl.viewers)
}

func (pl payloadLoss) worstPct() float64 {
	if pl.span == 0 {
		return 100
	}
	return 100 * float64(pl.worst) / float64(pl.span)
}

// diagReport describes where the window's lost packets went.
func diagReport(pl payloadLoss, countPct float64, maxLate time.Duration, c0, c1 udpCounters) string {
	var b strings.Builder
	fmt.Fprintf(&b, "diag: %d packets sent x %d viewers; by payload (late over %v = lost) %.4f %%, worst viewer %d; "+
		"by count at the window's end %.4f %%\n", pl.span, pl.viewers, maxLate, pl.pct(), pl.worst, countPct)
	fmt.Fprintf(&b, "diag: missing %d (too late %d): stamps no viewer got %d, viewer-packets missing of stamps others got %d "+
		"(video %d, audio %d); RTP sequence holes at the viewers %d; duplicates %d; in flight at the window's end %d (last %v later)\n",
		pl.missing, pl.tooLate, pl.byAll, pl.bySome, pl.video, pl.audio, pl.holes, pl.dups, pl.afterEnd, pl.lastAfterEnd.Round(time.Millisecond))
	if len(pl.sample) > 0 {
		fmt.Fprintf(&b, "diag: stamp:viewers-missing %s\n", strings.Join(pl.sample, " "))
	}
	var sn []string
	for _, k := range []string{"InDatagrams", "NoPorts", "InErrors", "OutDatagrams", "RcvbufErrors", "SndbufErrors", "InCsumErrors"} {
		sn = append(sn, fmt.Sprintf("%s %d", k, c1.snmp[k]-c0.snmp[k]))
	}
	fmt.Fprintf(&b, "diag: kernel Udp: %s; socket drops: server %d, loadgen %d\n", strings.Join(sn, ", "),
		c1.srvDrops-c0.srvDrops, c1.selfDrops-c0.selfDrops)
	var rl []string
	for _, k := range []string{"livecart_media_packets_forwarded_total", "livecart_media_packets_dropped_total",
		"livecart_media_packets_skipped_total", "livecart_media_packets_late_total", "livecart_media_packets_resent_total", "livecart_media_direct_packets_dropped_total",
		"livecart_media_udp_send_waits_total", "livecart_media_udp_send_errors_total", "livecart_media_pli_total"} {
		if v, ok := c1.relay[k]; ok {
			rl = append(rl, fmt.Sprintf("%s %.0f", strings.TrimPrefix(k, "livecart_media_"), v-c0.relay[k]))
		}
	}
	if len(rl) > 0 {
		fmt.Fprintf(&b, "diag: relay: %s\n", strings.Join(rl, ", "))
	}
	return b.String()
}

// sockReport splits the latency of the stamped packets the viewers recorded (the window
// and the -max-late after it) at the viewer's socket: publisher send → arrival at the
// socket (the kernel's receive time: the publisher's write, the relay, loopback) and
// arrival → the viewer's read (its own wait for a thread, SRTP and interceptors). Empty
// if the sockets kept no times.
func sockReport(recs [][]rtctest.Arrival) string {
	var toSock, toRead []time.Duration
	without := 0
	for _, r := range recs {
		for _, a := range r {
			if a.SockAt == 0 {
				without++
				continue
			}
			sent := a.At - a.Latency.Nanoseconds()
			toSock = append(toSock, time.Duration(a.SockAt-sent))
			toRead = append(toRead, time.Duration(a.At-a.SockAt))
		}
	}
	if len(toSock) == 0 {
		return ""
	}
	q := func(d []time.Duration) string {
		slices.Sort(d)
		return fmt.Sprintf("p50 %.1f p99 %.1f max %.1f ms", ms(mediaPercentile(d, 0.50)), ms(mediaPercentile(d, 0.99)), ms(d[len(d)-1]))
	}
	return fmt.Sprintf("diag: %d stamped packets with a socket time (%d without): send → the viewer's socket %s; "+
		"socket → the viewer's read %s\n", len(toSock), without, q(toSock), q(toRead))
}
