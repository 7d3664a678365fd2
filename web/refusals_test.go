package web

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// TestRefusedPublishersForgotten: publishers the store could not record live (it
// does not answer: here a closed store) are refused; a refusal is kept for the WHIP
// request whose Publish made it, which takes it. Refusals nobody takes (a Publish not
// made by the WHIP handler) are forgotten after refusalKeep: 50 of them over ten
// minutes leave at most the last minute's (the map kept every one before). A refused
// session's leave is still skipped while its refusal is kept.
func TestRefusedPublishersForgotten(t *testing.T) {
	var offset atomic.Int64 // the test's clock: time.Now plus offset
	e := newMediaEnv(t, func(d *Deps) {
		d.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	st := e.createStream("creator-1")
	e.store.Close() // every store call fails from now on: the publishers are refused
	for i := range 50 {
		session := fmt.Sprint("never-taken-", i)
		e.web.OnPublisher(st.ID, session, true)
		if !e.web.refusedPublishers.has(session) {
			t.Fatalf("session %d not refused on a closed store", i)
		}
		offset.Add(int64(12 * time.Second))
	}
	// 50 refusals 12 s apart: those of the last refusalKeep (60 s) are left.
	if n := e.web.refusedPublishers.len(); n > 6 {
		t.Fatalf("%d refusals kept after 10 minutes of refusals nobody took, want at most 6", n)
	}
	e.web.OnPublisher(st.ID, "taken", true)
	if err := e.web.refusedPublishers.take("taken"); err == nil {
		t.Fatal("the last refusal was not kept for its WHIP request")
	}
}
