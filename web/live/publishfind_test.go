package live

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// deafProxy forwards loopback TCP connections to a Redis; while deaf, Redis's replies
// are dropped (the commands still reach Redis and run): a reply lost on the way.
type deafProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	deaf   bool
}

func newDeafProxy(t *testing.T, target string) *deafProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &deafProxy{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(s, c); s.Close(); c.Close() }()
			go func() {
				defer c.Close()
				defer s.Close()
				buf := make([]byte, 4096)
				for {
					n, err := s.Read(buf)
					if err != nil {
						return
					}
					p.mu.Lock()
					deaf := p.deaf
					p.mu.Unlock()
					if !deaf {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return p
}

func (p *deafProxy) setDeaf(deaf bool) {
	p.mu.Lock()
	p.deaf = deaf
	p.mu.Unlock()
}

// TestPublishRunLongAgoIsFoundByItsRetry: a publication's try runs (seq 1) but its
// reply is lost, and the next try reaches Redis after the id's 60 s record is gone
// (the node cut from Redis for minutes; here the record is deleted, as its expiry
// would). The retry finds the event in the history by its id: Publish answers seq 1,
// and the event is in the history once. (Before: the retry published it again, seq 2,
// a second copy for the viewers.)
func TestPublishRunLongAgoIsFoundByItsRetry(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	publishRunLongAgo(t, "find-"+uuid.NewString()[:8])
}

// TestPublishRunLongAgoIsFoundUnderAnyPrefix: the same with a key prefix that holds
// "pub:" itself (a node's configured prefix): the history entry keeps the publication's
// id, not a piece of the key, and the retry finds it. (Before: the entry kept
// "x:live:{sid}:pub:<id>", the retry found nothing and published the event again.)
func TestPublishRunLongAgoIsFoundUnderAnyPrefix(t *testing.T) {
	t.Parallel() // waits on timers and its own servers: see TestMain
	publishRunLongAgo(t, "pub:find-"+uuid.NewString()[:8])
}

func publishRunLongAgo(t *testing.T, prefix string) {
	_, p, direct, bus := busBehindDeafProxy(t, prefix)
	ctx := context.Background()
	sid := uuid.NewString()
	body := []byte(`"text":"once","ts":"2026-12-03T08:00:00Z"}`)

	// The script is loaded (EVALSHA's NOSCRIPT answer would be dropped too).
	if _, err := bus.Publish(ctx, uuid.NewString(), EventAnnounce, body); err != nil {
		t.Fatal(err)
	}
	rec, err := publishAfterLostReply(t, bus, direct, p, sid, body, 1, 1)
	if err != nil || rec.Seq != 1 {
		t.Fatalf("publish: seq %d, %v; want seq 1", rec.Seq, err)
	}
	if n, _ := direct.Get(ctx, bus.key(sid, "seq")).Int64(); n != 1 {
		t.Fatalf("stream seq %d after the retry, want 1 (the event published again)", n)
	}
	if n, _ := direct.XLen(ctx, bus.key(sid, "history")).Result(); n != 1 {
		t.Fatalf("history holds %d events, want 1", n)
	}
	if want := string(buildFrame(EventAnnounce, 1, body)); string(rec.Frame) != want {
		t.Fatalf("frame %s, want %s", rec.Frame, want)
	}
}

// TestRedisClientAbortsOnClose: the live channel's Redis connections are reset when
// closed, not closed the usual way: the kernel drops what it has not delivered, so a
// try given up (its connection closed) never reaches Redis later, after a retry.
func TestRedisClientAbortsOnClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := abortingDialer(time.Second, nil)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := s.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after the client closed: %v, want a connection reset", err)
	}
}

// busBehindDeafProxy is a bus under prefix whose Redis (one that can hang) it reaches
// through a proxy that can go deaf, and a client that reaches the same Redis directly.
func busBehindDeafProxy(t *testing.T, prefix string) (*hangableRedis, *deafProxy, *redis.Client, *RedisBus) {
	t.Helper()
	r := startHangableRedis(t)
	p := newDeafProxy(t, r.addr())
	rdb, err := NewRedisClient("redis://" + p.ln.Addr().String() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	direct := redis.NewClient(&redis.Options{Addr: r.addr()})
	t.Cleanup(func() { direct.Close() })
	bus := NewRedisBus(rdb, prefix, nil, nil)
	t.Cleanup(func() { bus.Close() })
	return r, p, direct, bus
}

// publishAfterLostReply publishes body on sid with the proxy p deaf, so the first try runs
// in Redis but its reply is dropped; once the stream's seq is wantSeq it deletes the
// publication records (as 60 s later: want wantRecords of them), lets the replies through
// again and returns what the publication, retried, ends with.
func publishAfterLostReply(t *testing.T, bus *RedisBus, direct *redis.Client, p *deafProxy, sid string, body []byte, wantSeq int64, wantRecords int) (Record, error) {
	t.Helper()
	return publishAfterLostReplyThen(t, bus, direct, p, sid, body, wantSeq, nil, wantRecords)
}

// publishAfterLostReplyThen is publishAfterLostReply that calls then (if not nil) once
// the first try has run, before the records are counted and deleted.
func publishAfterLostReplyThen(t *testing.T, bus *RedisBus, direct *redis.Client, p *deafProxy, sid string, body []byte, wantSeq int64, then func(), wantRecords int) (Record, error) {
	t.Helper()
	ctx := context.Background()
	p.setDeaf(true)
	type result struct {
		rec Record
		err error
	}
	done := make(chan result, 1)
	go func() {
		rec, err := bus.Publish(ctx, sid, EventAnnounce, body)
		done <- result{rec, err}
	}()
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if n, _ := direct.Get(ctx, bus.key(sid, "seq")).Int64(); n == wantSeq {
			break // the first try ran; its reply is dropped
		}
		if time.Now().After(deadline) {
			t.Fatal("the first try never ran")
		}
	}
	if then != nil {
		then()
	}
	recs, err := direct.Keys(ctx, bus.key(sid, "pub:*")).Result()
	if err != nil || len(recs) != wantRecords {
		t.Fatalf("publication records %v (%v), want %d", recs, err, wantRecords)
	}
	if err := direct.Del(ctx, recs...).Err(); err != nil { // as after 60 s
		t.Fatal(err)
	}
	p.setDeaf(false)
	select {
	case res := <-done:
		return res.rec, res.err
	case <-time.After(PublishTryTimeout + 5*time.Second):
		t.Fatal("the publication never ended")
	}
	return Record{}, nil
}
