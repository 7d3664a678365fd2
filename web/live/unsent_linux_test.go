package live

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStalledClientDroppedAtAnEventRate: a client whose window has shut (it stopped
// reading) on a stream of tens of KiB a second is dropped once MaxBehind passes with
// frames waiting. The kernel's send buffer of a busy connection, autotuned to MiBs,
// took all it was sent for minutes, so nothing waited in the connection's queue and
// the client stayed connected and counted; now a socket keeps at most maxUnsent bytes
// not let out. (The test sets the server socket's buffer to 4 MiB, as autotuning
// would after a burst.)
func TestStalledClientDroppedAtAnEventRate(t *testing.T) {
	ts := newTestServer(t, Config{ViewersInterval: time.Hour, MaxBehind: time.Second})
	stalled := ts.dialPaused(t, 4096)
	defer stalled.Close()
	for _, fd := range connFDs(t, ts.hub) {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20); err != nil {
			t.Skipf("SO_SNDBUFFORCE: %v (needs CAP_NET_ADMIN)", err)
		}
	}
	reader := ts.dial(t, sid, "")
	reader.next(t)
	text := strings.Repeat("x", 2000)
	deadline := time.Now().Add(20 * time.Second) // < 1 MiB in all at ~40 KiB/s
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("a client that stopped reading is still connected after %d events (~%d KiB)", i, 2*i)
		}
		announce(ts.hub, sid, text)
		reader.nextOf(t, EventAnnounce)
		if ts.hub.localCount(sid) == 1 {
			t.Logf("dropped after %d events (~%d KiB)", i+1, 2*(i+1))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connFDs returns the descriptors of sid's connections on h.
func connFDs(t *testing.T, h *Hub) []int {
	t.Helper()
	h.mu.Lock()
	r := h.rooms[sid]
	h.mu.Unlock()
	if r == nil {
		t.Fatal("no room")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var fds []int
	for _, cn := range r.conns {
		fds = append(fds, cn.bc.fd)
	}
	return fds
}

// TestUnsentLimitSet: every websocket connection's socket has TCP_NOTSENT_LOWAT set.
func TestUnsentLimitSet(t *testing.T) {
	ts := newTestServer(t, Config{ViewersInterval: time.Hour})
	c := ts.dial(t, sid, "")
	c.next(t)
	var got []int
	for _, fd := range connFDs(t, ts.hub) {
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT)
		if err != nil {
			t.Error(err)
		}
		got = append(got, v)
	}
	if len(got) != 1 || got[0] != maxUnsent {
		t.Fatalf("TCP_NOTSENT_LOWAT of the connections: %v, want [%d]", got, maxUnsent)
	}
}
