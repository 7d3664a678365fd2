package stream

import (
	"net"
	"testing"
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
