package stream

import (
	"bytes"
	"errors"
	"net"
	"os"
	"reflect"
	"testing"
	"time"
)

// TestBatchConnReadFromAsSocket: the batcher's raw-recvfrom ReadFrom returns what the
// socket's own ReadFrom returns (payload, and the sender's address in the same form:
// pion's ICE mux keys its connections by it), on an IPv4 socket and on a dual-stack
// one (IPv4 senders as 16-byte mapped addresses, IPv6 ones), honours read deadlines
// as timeouts, and returns an error once the socket is closed, also to a read that
// was waiting.
func TestBatchConnReadFromAsSocket(t *testing.T) {
	cases := []struct {
		name         string
		network, ip  string
		senderNet    string
		senderIP     string
		wantIPLength int
	}{
		{"ipv4", "udp4", "127.0.0.1", "udp4", "127.0.0.1", 4},
		{"dual stack, IPv4 sender", "udp", "::", "udp4", "127.0.0.1", 16},
		{"dual stack, IPv6 sender", "udp", "::", "udp6", "::1", 16},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sock, err := net.ListenUDP(tc.network, &net.UDPAddr{IP: net.ParseIP(tc.ip)})
			if err != nil {
				t.Skipf("listen %s %s: %v", tc.network, tc.ip, err)
			}
			bc := newBatchConn(sock, false, testSendStats(), 0)
			if bc.rd == nil {
				t.Fatal("no raw reader on Linux")
			}
			port := sock.LocalAddr().(*net.UDPAddr).Port
			dst := &net.UDPAddr{IP: net.ParseIP(tc.senderIP), Port: port}
			snd, err := net.ListenUDP(tc.senderNet, &net.UDPAddr{IP: net.ParseIP(tc.senderIP)})
			if err != nil {
				t.Skipf("sender %s: %v", tc.senderNet, err)
			}
			defer snd.Close()
			buf := make([]byte, 1500)
			for i, size := range []int{1200, 0, 37} {
				msg := bytes.Repeat([]byte{byte('a' + i)}, size)
				// The socket's own read first, then the batcher's, of the same sender.
				if _, err := snd.WriteTo(msg, dst); err != nil {
					t.Fatal(err)
				}
				_ = sock.SetReadDeadline(time.Now().Add(5 * time.Second))
				n0, a0, err := sock.ReadFrom(buf)
				if err != nil || n0 != size {
					t.Fatalf("socket read: %d, %v", n0, err)
				}
				if _, err := snd.WriteTo(msg, dst); err != nil {
					t.Fatal(err)
				}
				n, a, err := bc.ReadFrom(buf)
				if err != nil {
					t.Fatal(err)
				}
				if n != size || !bytes.Equal(buf[:n], msg) {
					t.Fatalf("read %d bytes %q, want %d", n, buf[:min(n, 8)], size)
				}
				if !reflect.DeepEqual(a, a0) {
					t.Fatalf("sender %#v, the socket's own read says %#v", a, a0)
				}
				if ua := a.(*net.UDPAddr); len(ua.IP) != tc.wantIPLength || ua.Port != snd.LocalAddr().(*net.UDPAddr).Port {
					t.Fatalf("sender %v (IP of %d bytes), want port %d and %d bytes", ua, len(ua.IP),
						snd.LocalAddr().(*net.UDPAddr).Port, tc.wantIPLength)
				}
			}

			_ = bc.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
			start := time.Now()
			if _, _, err := bc.ReadFrom(buf); !os.IsTimeout(err) {
				t.Fatalf("read past the deadline: %v, want a timeout", err)
			}
			if d := time.Since(start); d < 25*time.Millisecond {
				t.Fatalf("timed out after %v, before the deadline", d)
			}

			_ = bc.SetReadDeadline(time.Time{})
			done := make(chan error, 1)
			go func() {
				_, _, err := bc.ReadFrom(buf)
				done <- err
			}()
			time.Sleep(20 * time.Millisecond)
			_ = bc.Close()
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("waiting read after Close: %v, want net.ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a waiting read did not return after Close")
			}
			if _, _, err := bc.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read after Close: %v", err)
			}
		})
	}
}
