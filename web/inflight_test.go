package web

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/livecart/livecart/web/auth"
)

// TestInFlight: a request counts while it is served (here parked reading its body, as a
// hold parks on its store batch) and no more once answered; an open websocket never
// counts (the collector's heap floor follows InFlight: cmd/livecart's gcfloor.go).
func TestInFlight(t *testing.T) {
	e := newLiveEnv(t)
	st := e.createStream("alice")
	ws := e.dialWS(st.ID, "")
	readFrame(t, ws) // served: the connection is a websocket now
	if n := e.web.InFlight(); n != 0 {
		t.Fatalf("a websocket open, nothing else: %d in flight, want 0", n)
	}

	body, send := io.Pipe()
	req, err := http.NewRequest("POST", e.srv.URL+"/api/streams", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token(auth.RoleCreator, "alice"))
	req.Header.Set("Content-Type", "application/json")
	answered := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	if _, err := send.Write([]byte(`{"title":`)); err != nil {
		t.Fatal(err)
	}
	waitInFlight(t, e.web, 1)
	if _, err := send.Write([]byte(`"parked"}`)); err != nil {
		t.Fatal(err)
	}
	send.Close()
	if code := <-answered; code != http.StatusCreated {
		t.Fatalf("the parked request: status %d, want 201", code)
	}
	waitInFlight(t, e.web, 0)
}

// waitInFlight waits until s has n requests in flight (a bound, not a timing: the count
// changes on the server's goroutines).
func waitInFlight(t *testing.T, s *Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); s.InFlight() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests in flight, want %d", s.InFlight(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
