package stream

import (
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livecart/livecart/stream/rtctest"
	"github.com/pion/transport/v2"
	"github.com/pion/transport/v2/stdnet"
)

// cutNet gives a viewer sockets whose traffic can be cut: what arrives (in) or what
// leaves (out) is dropped from then on, as when the viewer's network goes away.
type cutNet struct {
	*stdnet.Net
	in, out atomic.Bool
}

func (n *cutNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &cutConn{UDPConn: c, net: n}, nil
}

func (n *cutNet) ListenPacket(network, address string) (net.PacketConn, error) {
	a, err := net.ResolveUDPAddr(network, address)
	if err != nil {
		return nil, err
	}
	return n.ListenUDP(network, a)
}

type cutConn struct {
	*net.UDPConn
	net *cutNet
}

func (c *cutConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		k, from, err := c.UDPConn.ReadFrom(p)
		if err != nil || !c.net.in.Load() {
			return k, from, err
		}
	}
}

func (c *cutConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.net.out.Load() {
		return len(p), nil
	}
	return c.UDPConn.WriteTo(p, addr)
}

// TestViewerClosePathsFreeEverything: whichever way a viewer's session ends (DELETE,
// the stream's end, its network gone without a DELETE: nothing reaches the relay from
// it nor it from the relay, which ICE's timeouts find), the relay closes it and
// everything it ran for it ends: the goroutine count comes back to what it was before
// the viewer joined, while the stream's publisher and another viewer go on (not after
// the stream's end).
func TestViewerClosePathsFreeEverything(t *testing.T) {
	for _, c := range []struct {
		name  string
		close func(r *Relay, n *cutNet, rid string)
	}{
		{"delete", func(r *Relay, _ *cutNet, rid string) { _ = r.Delete("gone", rid, RoleViewer) }},
		{"end of stream", func(r *Relay, _ *cutNet, _ string) { r.EndStream("gone") }},
		{"network gone", func(_ *Relay, n *cutNet, _ string) { n.in.Store(true); n.out.Store(true) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, _ := newTestRelay(t, Options{DisconnectedTimeout: time.Second, FailedTimeout: time.Second})
			_, _, stopPub := startPublisher(t, r, "gone")
			stay, _ := startViewer(t, r, "gone")
			receiving(t, stay, 5, "the viewer that stays")
			sn, err := stdnet.NewNet()
			if err != nil {
				t.Fatal(err)
			}
			cn := &cutNet{Net: sn}
			a, err := rtctest.NewAPIWithOptions(rtctest.APIOptions{Net: cn})
			if err != nil {
				t.Fatal(err)
			}
			ended := c.name == "end of stream"
			if ended {
				stopPub() // the stream's end takes every peer: count without them
				_ = stay.Close()
				waitFor(t, slow(10*time.Second), "the other peers gone", func() bool {
					return r.Viewers("gone") == 0 && !r.Live("gone")
				})
			}
			time.Sleep(200 * time.Millisecond)
			runtime.GC()
			base := runtime.NumGoroutine()

			v, rid := startViewerWith(t, a, r, "gone")
			if !ended {
				receiving(t, v, 5, "the viewer that goes")
			}
			want := r.Viewers("gone") - 1
			if ended {
				want = 0 // the room is gone
			}
			c.close(r, cn, rid)
			waitFor(t, slow(10*time.Second), "the relay closing the viewer", func() bool {
				return r.Viewers("gone") == want
			})
			_ = v.Close() // the test's own peer ends too
			if !ended {
				receiving(t, stay, 5, "the viewer that stays, after")
			}
			rtctest.WaitGoroutines(t, base, nil)
		})
	}
}
