package live

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestRedisClientFindsADeadPeerAsGoRedisDoes: the live channel's connections
// (abortingDialer) probe an idle peer as go-redis's own dialer does (after 30 s idle,
// 3 probes 5 s apart): an idle pooled connection to a Redis host gone without a reset
// (a partition, a host lost) is dropped within ~45 s, not taken later for a try that
// then waits its whole 5 s. (Before: 5 min idle, probes 5 min apart.)
func TestRedisClientFindsADeadPeerAsGoRedisDoes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := abortingDialer(time.Second, nil)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]int{
		"SO_KEEPALIVE":  {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
		"TCP_KEEPIDLE":  {syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE},
		"TCP_KEEPINTVL": {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL},
		"TCP_KEEPCNT":   {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT},
	}
	wantVal := map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
	for name, opt := range want {
		var v int
		var gerr error
		if err := raw.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), opt[0], opt[1]) }); err != nil {
			t.Fatal(err)
		}
		if gerr != nil {
			t.Fatalf("%s: %v", name, gerr)
		}
		if v != wantVal[name] {
			t.Errorf("%s = %d, want %d (go-redis's default dialer)", name, v, wantVal[name])
		}
	}
}
