//go:build linux

package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestRawClientReadsEveryFrame runs the epoll reader against gorilla's server side:
// frames of each length encoding, several in one read and one split over reads, a
// ping that must be answered, and the close code.
func TestRawClientReadsEveryFrame(t *testing.T) {
	sizes := []int{5, 125, 126, 300, 65535, 65536, 200000}
	pong := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetPongHandler(func(s string) error { pong <- s; return nil })
		go func() { // reads, so that the pong handler runs
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}()
		c.WriteMessage(websocket.TextMessage, []byte("first"))
		for _, n := range sizes {
			c.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte{'a'}, n))
		}
		c.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second))
		select {
		case <-pong:
		case <-time.After(5 * time.Second):
			return // the client sees no close frame: the test fails on the close code
		}
		c.WriteMessage(websocket.TextMessage, []byte("last"))
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"), time.Now().Add(time.Second))
		time.Sleep(100 * time.Millisecond)
	}))
	defer srv.Close()

	raw, err := dialRaw("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/x", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	first, err := raw.readFirst()
	if err != nil || string(first) != "first" {
		t.Fatalf("first frame: got %q (%v), want %q", first, err, "first")
	}
	v := &wsViewer{raw: raw}
	var mu sync.Mutex
	var got []int
	done := make(chan struct{})
	e, err := startEpollReaders([]*wsViewer{v}, 1, func(_ int, _ *wsViewer, f []byte, _ int64) {
		mu.Lock()
		defer mu.Unlock()
		if string(f) == "last" {
			close(done)
			return
		}
		if strings.Trim(string(f), "a") != "" {
			t.Errorf("frame of %d bytes is not all 'a'", len(f))
		}
		got = append(got, len(f))
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no last frame within 10s (was the ping answered?)")
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.ended.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	e.stop()
	raw.Close()
	if len(got) != len(sizes) {
		t.Fatalf("frames: got sizes %v, want %v", got, sizes)
	}
	for i := range sizes {
		if got[i] != sizes[i] {
			t.Fatalf("frame %d: got %d bytes, want %d", i, got[i], sizes[i])
		}
	}
	if !websocket.IsCloseError(v.closed, websocket.CloseGoingAway) {
		t.Fatalf("end: got %v, want close 1001", v.closed)
	}
}
