package main

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// eventLats are one reader's announce latencies by event (µs), for -events-out: a
// run's p99 over 100 events of 10,000 deliveries each is about its worst event, so
// whether one event was late at every viewer or every event a little is what tells a
// stall from the fan-out's spread.
type eventLats struct {
	sentAt []int64    // per event: its send time (unix ns; 0 before a delivery)
	read   [][]uint32 // per event: latency to the read
	sock   [][]uint32 // per event: to the socket's receive stamp (nil: not stamped)
}

func newEventLats(events, perEvent int, stamped bool) *eventLats {
	e := &eventLats{sentAt: make([]int64, events), read: make([][]uint32, events)}
	if stamped {
		e.sock = make([][]uint32, events)
	}
	for k := range events {
		e.read[k] = make([]uint32, 0, perEvent)
		if stamped {
			e.sock[k] = make([]uint32, 0, perEvent)
		}
	}
	return e
}

// add records the delivery of event k (0 ≤ k < events) sent at sentAt.
func (e *eventLats) add(k int, sentAt int64, at arrival) {
	e.sentAt[k] = sentAt
	e.read[k] = append(e.read[k], uint32((at.app-sentAt)/1000))
	if e.sock != nil && at.sock != 0 {
		e.sock[k] = append(e.sock[k], uint32((at.sock-sentAt)/1000))
	}
}

// eventRow is one event's line of -events-out.
type eventRow struct {
	k        int
	sentAt   int64
	n        int
	read     [4]uint32 // min, p50, p99, max (µs)
	sock     [4]uint32 // the same to the socket (zero: none)
	sockSeen int
}

// spread returns min, p50, p99 and max of us, sorting it.
func spread(us []uint32) [4]uint32 {
	if len(us) == 0 {
		return [4]uint32{}
	}
	slices.Sort(us)
	at := func(p float64) uint32 { return us[int(float64(len(us)-1)*p)] }
	return [4]uint32{us[0], at(0.5), at(0.99), us[len(us)-1]}
}

// eventRows merges the readers' latencies by event; rows of events nobody got are left out.
func eventRows(tallies []*tally) []eventRow {
	var rows []eventRow
	events := len(tallies[0].byEvent.read)
	for k := range events {
		row := eventRow{k: k}
		var read, sock []uint32
		for _, t := range tallies {
			e := t.byEvent
			row.sentAt = max(row.sentAt, e.sentAt[k])
			read = append(read, e.read[k]...)
			if e.sock != nil {
				sock = append(sock, e.sock[k]...)
			}
		}
		if len(read) == 0 {
			continue
		}
		row.n, row.sockSeen = len(read), len(sock)
		row.read, row.sock = spread(read), spread(sock)
		rows = append(rows, row)
	}
	return rows
}

// perSecond is the p99 (µs) of the deliveries of the events published in each second
// of the run (by their send time from the first event's), by the read and the socket.
func perSecond(tallies []*tally, rows []eventRow) (read, sock []uint32) {
	if len(rows) == 0 {
		return nil, nil
	}
	t0 := rows[0].sentAt
	var rs, ss [][]uint32
	for _, row := range rows {
		s := int((row.sentAt - t0) / int64(time.Second))
		for len(rs) <= s {
			rs, ss = append(rs, nil), append(ss, nil)
		}
		for _, t := range tallies {
			rs[s] = append(rs[s], t.byEvent.read[row.k]...)
			if t.byEvent.sock != nil {
				ss[s] = append(ss[s], t.byEvent.sock[row.k]...)
			}
		}
	}
	for i := range rs {
		read = append(read, spread(rs[i])[2])
		sock = append(sock, spread(ss[i])[2])
	}
	return read, sock
}

// reportEvents writes -events-out and prints the p99 per second of publishing.
func (r *wsRun) reportEvents() error {
	rows := eventRows(r.tallies)
	read, sock := perSecond(r.tallies, rows)
	ms := func(us []uint32) string {
		var b strings.Builder
		for i, v := range us {
			if i > 0 {
				b.WriteString(" ")
			}
			fmt.Fprintf(&b, "%.1f", float64(v)/1000)
		}
		return b.String()
	}
	fmt.Printf("  p99 per second of publishing, ms: %s\n", ms(read))
	if r.tallies[0].byEvent.sock != nil {
		fmt.Printf("  socket p99 per second of publishing, ms: %s\n", ms(sock))
	}
	f, err := os.Create(r.cfg.eventsOut)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "k\tsent_unix_ns\tviewers\tread_min_us\tread_p50_us\tread_p99_us\tread_max_us\tstamped\tsock_min_us\tsock_p50_us\tsock_p99_us\tsock_max_us")
	for _, row := range rows {
		fmt.Fprintf(w, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", row.k, row.sentAt, row.n,
			row.read[0], row.read[1], row.read[2], row.read[3], row.sockSeen, row.sock[0], row.sock[1], row.sock[2], row.sock[3])
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
