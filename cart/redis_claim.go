package cart

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The idempotency claim without a script (the usual case: a new key).
//
// A claim by lua/claim.lua is an EVALSHA of its own per checkout (the user's slot
// shares no script call with other buyers), ~90–120k of redis-server's instructions of
// which ~30k is the script call's frame. The plain claim sends two commands in the
// shared pipeline instead:
//
//	SET <user>idem:<hash> pending|token|fp|until_ms NX PX 86400000
//	HGETALL <user>gen
//
// SET … NX takes a new key as claim.lua's own SET NX does, with the same pending
// mark, and answers OK; a key in use answers nil and is left as it is: the claim then
// runs claim.lua, which judges it as before (a retry, a concurrent call, a stale
// mark, a done mark). until_ms is by Redis's clock, which the
// node estimates from a TIME sent with a claim at most once a second (see
// redisClock): the estimate is late by at most a round trip, never early, so a stale
// mark is taken over a little later than claim.lua's own, never sooner.
//
// The cart index is read as cartStreams reads it (see cartFromIndex). Since
// 2026-12-06 its fields name generations, and the order that empties a stream's cart
// deletes those its claim read (see finishCheckout): nothing is left to forget. What
// follows is about the index's earlier form, which nodes before then wrote and which
// is still read: a stream whose "~" record (an order
// emptied the cart there) carries its generation is left out of the cart. claim.lua
// also drops such streams and every "~" record (one conditional HDEL, in the script);
// the plain claim cannot do that without a script, so it leaves them (the stored
// forms stay the same; nodes running claim.lua read and drop them as before) and asks
// forget.lua to forget them off the request's path once pruneDeadAfter of them are
// there: a returning buyer's index holds its live streams, their last "~" record and
// at most pruneDeadAfter-1 streams it emptied.
//
// The order index: claim.lua lists the claimed stream (given, or the cart's only one)
// in the user's order index; the plain claim leaves that to the checkout batch (its
// SADD before the checkout script, as for a claim that listed another stream), so
// the stream is still listed before the order is placed.
//
// Claims go by claim.lua while some user's cart index may still have its older form
// (migrateCartSets not done) and while the node has no recent sample of Redis's clock.

// pruneDeadAfter is how many emptied streams a plain claim leaves in a user's cart
// index before it asks forget.lua to forget them.
const pruneDeadAfter = 3

// redisClock estimates Redis's clock from a TIME answered in a claim's pipeline.
type redisClock struct {
	sample atomic.Pointer[clockSample]
	asking atomic.Bool // a claim's pipeline carries a TIME now
}

// clockSample is Redis's time (µs) as TIME answered it, and the node's (monotonic)
// time before the command was sent: Redis read its clock after sent, so redisUS +
// time.Since(sent) is never earlier than Redis's clock, but for the clocks' drift
// (nowMS adds clockDriftPPM of the sample's age for it).
//
// The monotonic clock stops while the node's machine is suspended and Redis's clock
// does not, so the sample's age is also taken by the wall clock (sentWall) and the
// larger of the two is used: a wall clock stepped back leaves the monotonic age, a
// suspend the wall clock's; an estimate early by a suspend would let a same-key
// call take over a pending mark that is still in use.
type clockSample struct {
	redisUS  int64
	sent     time.Time
	sentWall int64 // unix ns by the wall clock at sent
}

// age is how long ago the sample's TIME was sent: the larger of the monotonic and
// the wall clock's elapsed time (see clockSample).
func (s *clockSample) age() time.Duration {
	el := time.Since(s.sent)
	if w := time.Duration(time.Now().UnixNano() - s.sentWall); w > el {
		el = w
	}
	return el
}

const (
	clockResample = time.Second     // a claim asks for a new sample when this one is older
	maxClockAge   = 5 * time.Minute // plain claims stop using a sample older than this
	clockMarginMS = 2               // added to the estimate: later, never earlier
	clockDriftPPM = 200             // and this much of the sample's age (two clocks' drift)
)

// nowMS is Redis's clock in ms (as claim.lua computes now_ms), estimated never early;
// false if there is no recent sample.
func (c *redisClock) nowMS() (int64, bool) {
	s := c.sample.Load()
	if s == nil {
		return 0, false
	}
	el := s.age()
	if el > maxClockAge || el < 0 {
		return 0, false
	}
	us := el.Microseconds()
	return (s.redisUS+us+us*clockDriftPPM/1_000_000)/1000 + clockMarginMS, true
}

// wantSample reports whether the caller should send a TIME (at most one at a time).
func (c *redisClock) wantSample() bool {
	s := c.sample.Load()
	if s != nil && time.Since(s.sent) < clockResample {
		return false
	}
	return c.asking.CompareAndSwap(false, true)
}

// took records a TIME's answer (or, with err, only that none is in flight).
func (c *redisClock) took(t time.Time, sent time.Time, err error) {
	if err == nil && !t.IsZero() {
		c.sample.Store(&clockSample{redisUS: t.UnixMicro(), sent: sent, sentWall: sent.UnixNano()})
	}
	c.asking.Store(false)
}

// plainClaim is a plain claim's commands in the shared pipeline (its own pipeAdder)
// and what their arguments point to (see evalArgs).
type plainClaim struct {
	pipeCall
	set                   [6]any
	hgetall               [2]any
	get                   *redis.StatusCmd // (not Do's Cmd: its "OK" would be boxed)
	gens                  *redis.MapStringStringCmd
	time                  *redis.TimeCmd // nil unless the claim carries a clock sample
	sent                  time.Time      // when the commands were queued (before the pipeline went)
	idemKey, mark, genKey string
	dayMS                 int64
	withTime              bool
}

// plainClaims are claimPlain's claims, each its own pipeAdder with its done channel
// (buffered and sent one value, see pipeCall.signal). A claim goes back once
// answered: its batch touches it no more after the send, and claimPlain keeps only
// its Cmds and strings. One heap object of ~290 bytes and a channel less per checkout.
var plainClaims = sync.Pool{New: func() any {
	c := &plainClaim{pipeCall: pipeCall{done: make(chan struct{}, 1), signal: true}}
	c.add = c
	return c
}}

func (c *plainClaim) addTo(ctx context.Context, p redis.Pipeliner) {
	if c.withTime {
		c.sent = time.Now()
		c.time = p.Time(ctx)
	}
	c.get = redis.NewStatusCmd(ctx, c.set[:]...)
	p.Process(ctx, c.get)
	c.gens = redis.NewMapStringStringCmd(ctx, c.hgetall[:]...)
	p.Process(ctx, c.gens)
}

// errClaimByScript: the plain claim could not take the key; claim.lua judges it.
var errClaimByScript = errors.New("claim by script")

// claimPlain takes a new idempotency key without a script (see above): it answers
// the call's token and the user's cart, or errClaimByScript when claim.lua must run
// (the key is in use, or no recent clock sample), or an error. withTime: the claim
// carries a TIME for the clock (the caller won wantSample); used: it did. The cart
// answered is into (the caller's, see Checkout), or a new one if into is nil.
func (s *RedisStore) claimPlain(ctx context.Context, userID, ih, fp string, now time.Time, withTime bool, into *userCart) (token string, cart *userCart, used bool, err error) {
	untilMS, ok := s.clock.nowMS()
	if !ok {
		return "", nil, false, errClaimByScript
	}
	untilMS += idemPendingTTL.Milliseconds()
	c := plainClaims.Get().(*plainClaim)
	c.withTime = withTime
	// The token (<random>:<now_us>, see tokenAt), the three keys and the mark, made in
	// one allocation.
	var num, at [20]byte
	var tok [24]byte
	var rnd [12]byte
	rand.Read(rnd[:])
	hex.Encode(tok[:], rnd[:])
	nowUS := strconv.AppendInt(at[:0], now.UnixMicro(), 10)
	ub := len(s.prefix) + len(userID) + 5 // len(userBase)
	all := s.prefix + "{u:" + userID + "}:gen" + s.prefix + "{u:" + userID + "}:orders" +
		s.prefix + "{u:" + userID + "}:idem:" + ih + "pending|" + string(tok[:]) + ":" + string(nowUS) + "|" + fp + "|" +
		string(strconv.AppendInt(num[:0], untilMS, 10))
	c.genKey, all = all[:ub+3], all[ub+3:]
	orders, all := all[:ub+6], all[ub+6:]
	c.idemKey, c.mark = all[:ub+5+len(ih)], all[ub+5+len(ih):]
	token = c.mark[len("pending|") : len("pending|")+len(tok)+1+len(nowUS)]
	c.dayMS = IdempotencyTTL.Milliseconds()
	c.set = [...]any{"set", &c.idemKey, &c.mark, "nx", "px", &c.dayMS}
	c.hgetall = [...]any{"hgetall", &c.genKey}
	s.batch.queue(&c.pipeCall)
	if err := wait(ctx, c.done); err != nil {
		// Not put back: its batch may still answer into it.
		if withTime {
			s.clock.took(time.Time{}, time.Time{}, err)
		}
		return "", nil, true, err
	}
	if withTime {
		s.clock.took(c.time.Val(), c.sent, c.time.Err())
	}
	// Answered: what follows needs its Cmds and names, not c.
	get, gens, idemKey, genKey := c.get, c.gens, c.idemKey, c.genKey
	*c = plainClaim{pipeCall: c.pipeCall}
	plainClaims.Put(c)
	// (Compared, not errors.Is: go-redis answers redis.Nil itself, and errors.Is
	// costs a reflection per call.)
	switch err := get.Err(); {
	case err == nil: // OK: taken
	case err == redis.Nil: // the key is in use
		return "", nil, true, errClaimByScript
	default:
		return "", nil, true, unavailable(err)
	}
	if err := gens.Err(); err != nil {
		// The key is taken and stays pending until its time, as after a claim.lua
		// whose answer was lost.
		return "", nil, true, unavailable(err)
	}
	if cart = into; cart == nil {
		cart = new(userCart)
	}
	dead := cart.fromIndex(gens.Val())
	cart.orders, cart.idemKey, cart.genKey = orders, idemKey, genKey
	if len(dead) >= 2*pruneDeadAfter {
		s.pruneDead(genKey[:ub], dead)
	}
	return token, cart, true, nil
}

// cartFromIndex is the cart of a user's cart index (its generation hash, read by a
// plain claim), and the streams to forget (stream, generation pairs; "0" for a "~"
// record whose stream is gone). indexed is left empty: the checkout batch lists the
// stream in the order index (see above).
//
// The index has two forms of field. Since 2026-12-06 a hold batch adds the field
// <generation> = "+" .. stream id (a stream has one per hold batch that added to the
// user's cart there), and the order that empties the cart there deletes the fields its
// claim read (see finishCheckout): a hold that raced it added a field of its own,
// which stays, so nothing is left to forget. Before, the field was the stream id (its
// value the last generation) and an order that emptied the cart recorded it in a "~"
// record; those streams whose "~" record carries their generation are left out, as
// claim.lua leaves them out, and forgotten by forget.lua. (Generations are hold ids
// and "0", never "+…"; stream ids never start with "~".)
func cartFromIndex(m map[string]string) (*userCart, []string) {
	cart := new(userCart)
	return cart, cart.fromIndex(m)
}

// fromIndex is cartFromIndex into cart (which it overwrites but for orders, idemKey,
// genKey and reclaimed): the usual index of one field puts its stream in cart.one,
// not in a slice of its own.
func (cart *userCart) fromIndex(m map[string]string) []string {
	cart.gens, cart.sids, cart.indexed = m, nil, ""
	if len(m) == 1 {
		cart.sids = cart.one[:0]
	} else if len(m) > 0 {
		cart.sids = make([]string, 0, len(m))
	}
	var dead []string
	var buf [64]byte
	for f, g := range m {
		if sid, ok := strings.CutPrefix(g, "+"); ok { // a generation's field (the usual new buyer's one)
			cart.sids = append(cart.sids, sid)
			continue
		}
		if len(m) == 1 { // an index of the earlier form with one stream, no "~" record
			if !strings.HasPrefix(f, "~") {
				cart.sids = append(cart.sids, f)
			}
			break
		}
		if sid, ok := strings.CutPrefix(f, "~"); ok {
			if _, ok := m[sid]; !ok { // its stream is gone: the record serves nothing
				dead = append(dead, sid, "0")
			}
			continue
		}
		if e, ok := m[string(append(append(buf[:0], '~'), f...))]; ok && e == g {
			dead = append(dead, f, g) // an order emptied the cart there since its last hold
			continue
		}
		cart.sids = append(cart.sids, f)
	}
	if len(cart.sids) > 1 {
		sort.Strings(cart.sids)
		cart.sids = slices.Compact(cart.sids) // (a stream with fields of several hold batches)
	}
	return dead
}

// pruneDead asks forget.lua, off the request's path, to forget the streams (pairs of
// stream and generation) unless a hold came there since, and their "~" records. Its
// arguments: the streams, their "~" records' fields, the generations.
func (s *RedisStore) pruneDead(userBase string, pairs []string) {
	n := len(pairs) / 2
	fields := make([]string, n)
	args := make([]any, 4+3*n)
	args[0], args[1], args[2], args[3] = "evalsha", s.shas["forget"], 1, userBase
	for i := range n {
		fields[i] = "~" + pairs[2*i]
		args[4+i], args[4+n+i], args[4+2*n+i] = &pairs[2*i], &fields[i], &pairs[2*i+1] // see evalArgs
	}
	var cmd *redis.Cmd
	done := s.batch.send(func(ctx context.Context, p redis.Pipeliner) { cmd = p.Do(ctx, args...) })
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		<-done
		if isNoScript(cmd.Err()) { // Redis restarted: load it again (else best effort: the next claim asks again)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.scripts["forget"].Run(ctx, s.rdb, []string{userBase}, args[4:]...)
		}
	}()
}
