package stream

import (
	"net"
	"sync"
	"testing"
	"time"
)

// BenchmarkBatchConn sends frames of 8 equal 1,128-byte datagrams to 50 loopback
// receivers, as the relay's writers do, through the plain socket, the batcher without
// GSO, and with. One op is one datagram; the receivers' reading is in the time too.
func BenchmarkBatchConn(b *testing.B) {
	sock := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close() })
		return c
	}
	var dsts []net.Addr
	for range 50 {
		r := sock()
		_ = r.SetReadBuffer(4 << 20)
		dsts = append(dsts, r.LocalAddr())
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := r.ReadFrom(buf); err != nil {
					return
				}
			}
		}()
	}
	frame := func(w net.PacketConn, n int) {
		p := make([]byte, 1128)
		for i := 0; i < n; {
			for _, d := range dsts {
				for range 8 {
					_, _ = w.WriteTo(p, d)
					i++
				}
			}
		}
	}
	b.Run("sendto", func(b *testing.B) { frame(sock(), b.N) })
	for _, gso := range []bool{false, true} {
		name := map[bool]string{false: "sendmmsg", true: "sendmmsg+gso"}[gso]
		b.Run(name, func(b *testing.B) {
			s := sock()
			if gso && !gsoSupported(s) {
				b.Skip("no UDP_SEGMENT")
			}
			bc := newBatchConn(s, gso, testSendStats(), 0)
			frame(bc, b.N)
			_ = bc.Close() // sends what is queued
		})
	}
}

// BenchmarkBatchConnPaced models a paced publisher's fan-out: every 5 ms each of 200
// writers (one per viewer) writes a burst of 3 equal 1,128-byte datagrams to its own
// loopback receiver (not read: the kernel's delivery up to the full socket queue is
// the sender's cost, as on loopback in the relay). It reports the process CPU time
// (user + system) per datagram for the batcher without and with the send gather.
func BenchmarkBatchConnPaced(b *testing.B) {
	const viewers, burst = 200, 3
	if _, ok := processCPU(); !ok {
		b.Skip("no process CPU time on this system")
	}
	var dsts []net.Addr
	for range viewers {
		r, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = r.Close() })
		dsts = append(dsts, r.LocalAddr())
	}
	for _, gather := range []time.Duration{0, 500 * time.Microsecond, time.Millisecond} {
		b.Run("gather="+gather.String(), func(b *testing.B) {
			s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			stats := testSendStats()
			bc := newBatchConn(s, gsoSupported(s), stats, gather)
			defer bc.Close()
			qs := make([]chan struct{}, viewers)
			var wg sync.WaitGroup
			for i := range qs {
				qs[i] = make(chan struct{}, 16)
				wg.Add(1)
				go func() {
					defer wg.Done()
					p := make([]byte, 1128)
					for range qs[i] {
						for range burst {
							_, _ = bc.WriteTo(p, dsts[i])
						}
					}
				}()
			}
			bursts := max(b.N/(viewers*burst), 1)
			cpu0, _ := processCPU()
			b.ResetTimer()
			tick := time.NewTicker(5 * time.Millisecond)
			for range bursts {
				<-tick.C
				for _, q := range qs {
					q <- struct{}{}
				}
			}
			tick.Stop()
			for _, q := range qs {
				close(q)
			}
			wg.Wait()
			_ = bc.Close()
			b.StopTimer()
			cpu1, _ := processCPU()
			cpu := cpu1 - cpu0
			n := float64(bursts * viewers * burst)
			b.ReportMetric(float64(cpu.Nanoseconds())/1000/n, "cpu-µs/datagram")
			b.ReportMetric(testutilValue(stats.messages)/max(testutilValue(stats.calls), 1), "msgs/call")
			b.ReportMetric(n/max(testutilValue(stats.messages), 1), "datagrams/msg")
		})
	}
}
