package cart

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Holds, the expiry sweep, checkout and orders of the Redis store.

// evalInPipe queues a script by its SHA in a pipeline (the script cache is filled by
// Run on first use; after a Redis restart the caller falls back to Run on NOSCRIPT).
func (s *RedisStore) evalInPipe(ctx context.Context, pipe redis.Pipeliner, name, key string, args ...any) *redis.Cmd {
	return pipe.EvalSha(ctx, s.scripts[name].Hash(), []string{key}, args...)
}

// evalArgs starts the arguments of an EVALSHA of script name on one key for
// Pipeliner.Do, with room for n more: the hash and the key go by pointer, as the
// callers' values do where they can (go-redis writes a *string, *int, *int64 or
// *time.Time argument as its value; a string or number put in an interface costs an
// allocation each, a dozen per buyer).
func (s *RedisStore) evalArgs(name string, key *string, n int) []any {
	a := make([]any, 4, 4+n)
	a[0], a[1], a[2], a[3] = "evalsha", s.shas[name], 1, key
	return a
}

// isNoScript says whether err is Redis's NOSCRIPT (nil without a call:
// redis.HasErrorPrefix allocates each time).
func isNoScript(err error) bool { return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") }

// HoldUnits takes units of a product or a sale and records the hold. Concurrent
// calls on one stream are grouped: while a batch of the stream is at Redis, the
// calls that arrive queue and go together in the next (one script call, one round
// trip; up to batchesInFlight batches at Redis at once), as the embedded store groups
// its commits. Each hold is still checked and
// recorded on its own, atomically.
func (s *RedisStore) HoldUnits(ctx context.Context, req HoldRequest, now time.Time) (Hold, Changes, error) {
	var sid string
	var err error
	if req.SaleID != "" {
		sid, err = s.streamOfID(ctx, "sidx", req.SaleID)
	} else {
		sid, err = s.streamOfID(ctx, "pidx", req.ProductID)
	}
	if err != nil {
		return Hold{}, Changes{}, err
	}
	call := holdCalls.Get().(*holdCall)
	call.req, call.now = req, now
	s.holds.add(sid, call)
	select {
	case <-call.done:
		h, ch, err := call.hold, call.ch, call.err
		*call = holdCall{done: call.done} // its batch is done with it (see holdCalls)
		holdCalls.Put(call)
		return h, ch, err
	case <-ctx.Done():
		// Not put back: its batch may still answer into it.
		return Hold{}, Changes{}, unavailable(ctx.Err())
	}
}

// holdCalls are HoldUnits' calls, each with its done channel (buffered: the batch
// sends one value, the call receives it, and the channel is empty again for the next
// call). A call goes back once its answer was received: its batch touches it no more
// after the send. One heap object of ~580 bytes and a channel less per hold.
var holdCalls = sync.Pool{New: func() any { return &holdCall{done: make(chan struct{}, 1)} }}

// maxHoldBatch bounds the holds of one script call (a few ms of Redis time).
const maxHoldBatch = 200

// holdCall is one HoldUnits call waiting for its batch.
type holdCall struct {
	req  HoldRequest
	now  time.Time
	done chan struct{} // one value sent when hold, ch and err are set (buffered, 1)
	hold Hold
	ch   Changes
	err  error
	// What the batch's commands point to (see evalArgs): ExpiresAt's µs, now's µs, and
	// the count of its group (see holdBatch) if it starts one.
	expUS, nowUS int64
	group        int
}

// seqBase is a batch's seq base (the scripts' ARGV[1], see seq_suffixes in
// lua/lib.lua): the node's clock in µs, at least one more than the last batch's, so an
// item's seq (the base and 3 digits of its place in the batch) grows with the clock in
// ns as each item's own clock did before (19 digits, an int64).
func (s *RedisStore) seqBase() int64 {
	if s.fixedSeq != 0 {
		return s.fixedSeq
	}
	for {
		last := s.lastSeq.Load()
		b := max(time.Now().UnixMicro(), last+1)
		if s.lastSeq.CompareAndSwap(last, b) {
			return b
		}
	}
}

// holdBatch runs one script call for the calls and answers each, in one round trip:
// the sweep learns of the holds before the script runs (one entry for the batch, due
// at its first expiry, see holdBatchDueKey), so no crash can leave a hold that no
// sweep finds (a refused hold stays in the entry; the sweep skips it); the carts learn
// of the stream right after it (a crash in between leaves an unacknowledged hold out
// of the cart until it expires).
func (s *RedisStore) holdBatch(sid string, calls []*holdCall) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	base, seq := s.base(sid), s.seqBase()
	// The seq base, then groups of holds of one target and quantity (a storm's holds of
	// one sale: one group), each its count, product id, sale id and quantity, then 4
	// values per hold (see lua/hold.lua).
	args := append(s.evalArgs("hold", &base, 5+4*len(calls)), &seq)
	var group *holdCall // the first hold of the current group
	// Each user's first hold of the batch: its id is the stream's new generation in
	// the user's cart index (unique: a generation never comes back, see lua/claim.lua):
	// the field <generation> = "+" .. stream id (see cartFromIndex).
	first := make(map[string]bool, len(calls))
	var users []*holdCall
	ids, uids := make([]string, len(calls)), make([]string, len(calls))
	var dueUS int64
	for i, c := range calls {
		r := &c.req
		c.expUS, c.nowUS = r.ExpiresAt.UnixMicro(), c.now.UnixMicro()
		if g := group; g == nil || g.req.ProductID != r.ProductID || g.req.SaleID != r.SaleID || g.req.Quantity != r.Quantity {
			group = c
			args = append(args, &c.group, &r.ProductID, &r.SaleID, &r.Quantity)
		}
		group.group++
		args = append(args, &r.ID, &r.UserID, &c.expUS, &c.nowUS)
		ids[i], uids[i] = r.ID, r.UserID
		if i == 0 || c.expUS < dueUS {
			dueUS = c.expUS
		}
		if !first[r.UserID] {
			first[r.UserID] = true
			users = append(users, c)
		}
	}
	// The users' carts learn of the stream right after the script, with a new
	// generation (see lua/claim.lua), in the same round trip.
	keys := make([]string, len(users))
	gens := make([]*string, len(users))
	for i, c := range users {
		keys[i], gens[i] = s.userKey(c.req.UserID, "gen"), &c.req.ID
	}
	plus := "+" + sid // the value of each user's field (one string per batch)
	addToCarts := func(p redis.Pipeliner) {
		for i := range users {
			if s.streamKeyedIndex {
				p.Do(ctx, "hset", &keys[i], &sid, gens[i])
				continue
			}
			p.Do(ctx, "hset", &keys[i], gens[i], &plus)
		}
	}
	due := holdBatchMember(sid, ids, uids)
	pipe := s.rdb.Pipeline()
	pipe.Do(ctx, "zadd", s.prefix+holdBatchDueKey, &dueUS, &due)
	cmd := pipe.Do(ctx, args...)
	addToCarts(pipe)
	_, err := pipe.Exec(ctx)
	var r flatReply
	switch {
	case isNoScript(cmd.Err()):
		if s.afterHoldNoScript != nil {
			s.afterHoldNoScript()
		}
		// The pipeline wrote the generations before any hold: a checkout may have
		// recorded one as emptied since, so the holds get new ones (still unique).
		for i, c := range users {
			g := c.req.ID + ".1"
			gens[i] = &g
		}
		if r, err = s.runFlat(ctx, "hold", sid, holdWidth, args[4:]...); err == nil {
			pipe := s.rdb.Pipeline()
			addToCarts(pipe)
			_, err = pipe.Exec(ctx)
			err = unavailable(err)
		}
	case err != nil:
		err = scriptError("hold", err)
	default:
		r, err = decodeFlat("hold", cmd.Val(), holdWidth)
	}
	var last []string // the last new hold's answer (a new hold answering the same comes as "", "", "", "")
	for i, c := range calls {
		if res := r.item(i); res != nil {
			switch res[0] {
			case "n":
				last = res
			case "":
				if last != nil {
					copy(res, last)
				}
			}
		}
		c.hold, c.ch, c.err = holdResult(r, i, err, sid, c.req, c.now)
		c.done <- struct{}{} // the last use of c here (see holdCalls)
	}
}

// holdResult is the answer of the i-th hold of a batch: the hold and its sale or
// product after the batch, or the hold's business error. A new hold's answer carries
// only what the request does not say (its product, price and currency); a retry's
// carries the stored hold.
func holdResult(r flatReply, i int, err error, sid string, req HoldRequest, now time.Time) (Hold, Changes, error) {
	if err != nil {
		return Hold{}, Changes{}, err
	}
	res := r.item(i)
	var h Hold
	switch {
	case res == nil:
		return Hold{}, Changes{}, fmt.Errorf("redis script hold: %d results, want more than %d", len(r.slots)/holdWidth, i)
	case res[0] == "e":
		return Hold{}, Changes{}, batchItemError("hold", res[1], res[2])
	case res[0] == "r": // a retry: the stored hold
		m, err := unpackHash(res[1])
		if err != nil {
			return Hold{}, Changes{}, err
		}
		m["id"], m["stream_id"] = req.ID, sid
		if m["user_id"] == "" { // (not in the record's newer form: the cart's)
			m["user_id"] = req.UserID
		}
		h = holdFromHash(m, now)
	case res[0] == "n": // a new hold: the request, and what the script chose
		h = Hold{
			ID: req.ID, UserID: req.UserID, StreamID: sid, ProductID: res[1], SaleID: req.SaleID,
			Quantity: req.Quantity, UnitPriceCents: atoi64(res[2]), Currency: res[3],
			ExpiresAt: time.UnixMicro(req.ExpiresAt.UnixMicro()).UTC(), Expired: req.ExpiresAt.UnixMicro() <= now.UnixMicro(),
		}
	default:
		return Hold{}, Changes{}, fmt.Errorf("redis script hold: bad result %q", res[0])
	}
	// The batch's record, shared by its holds (read only, see flatReply).
	ch := Changes{}
	if s, ok := r.sale[h.SaleID]; ok && h.SaleID != "" {
		ch.Sales = s
	} else if p, ok := r.product[h.ProductID]; ok && h.SaleID == "" {
		ch.Products = p
	}
	return h, ch, nil
}

// holdWidth is the number of strings per hold in the hold script's reply.
const holdWidth = 4

// cartOf is one stream's part of a user's cart.
type cartOf struct {
	streamID string
	idem     string // the idempotency key's record in this stream, if asked for
	holds    []map[string]string
}

// cartStreams lists the streams where the user has holds (or had, until pruned) and
// the index's fields that name them (see cartFromIndex and lua/prune.lua; "~" records
// left out).
func (s *RedisStore) cartStreams(ctx context.Context, userID string) ([]string, map[string]string, error) {
	var members *redis.StringSliceCmd
	var gens *redis.MapStringStringCmd
	done := s.batch.send(func(bctx context.Context, p redis.Pipeliner) {
		members = p.SMembers(bctx, s.userBase(userID)+"holds")
		gens = p.HGetAll(bctx, s.userBase(userID)+"gen")
	})
	if err := wait(ctx, done); err != nil {
		return nil, nil, err
	}
	if err := errors.Join(members.Err(), gens.Err()); err != nil {
		return nil, nil, unavailable(err)
	}
	gen, gone := map[string]string{}, map[string]string{}
	var sids []string
	for f, g := range gens.Val() {
		if sid, ok := strings.CutPrefix(g, "+"); ok { // a generation's field (see cartFromIndex)
			sids = append(sids, sid)
			gen[f] = g
		} else if sid, ok := strings.CutPrefix(f, "~"); ok {
			gone[sid] = g // an order emptied the cart there (the earlier form, see lua/claim.lua)
		} else {
			gen[f] = g
		}
	}
	for sid, g := range gen {
		if strings.HasPrefix(g, "+") {
			continue
		}
		if e, ok := gone[sid]; !ok || e != g { // else an order emptied it since its last hold
			sids = append(sids, sid)
		}
	}
	for _, sid := range members.Val() { // the index's older form
		if _, ok := gen[sid]; !ok && gone[sid] != "0" {
			sids = append(sids, sid)
		}
	}
	sort.Strings(sids)
	return slices.Compact(sids), gen, nil
}

// pruneCarts forgets, off the request's path, the streams where the user's cart was
// read empty, so a buyer of many streams does not make every cart read visit all.
// gens: the index's fields as read (see cartStreams): a generation's field of such a
// stream goes as itself and "+", the stream's field of the earlier form as the stream
// and its generation ("0" if neither names it).
func (s *RedisStore) pruneCarts(userID string, cs []cartOf, gens map[string]string) {
	var args []any
	for _, c := range cs {
		if len(c.holds) == 0 && c.idem == "" {
			fields := indexFields(gens, c.streamID, nil)
			for _, f := range fields {
				args = append(args, f, "+")
			}
			if gen, ok := gens[c.streamID]; ok || len(fields) == 0 {
				args = append(args, c.streamID, cmp.Or(gen, "0"))
			}
		}
	}
	if len(args) == 0 {
		return
	}
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.scripts["prune"].Run(ctx, s.rdb, []string{s.userBase(userID)}, args...)
	}()
}

// indexFields appends to fields the generations' fields of stream sid in a user's cart
// index as read (field → value; see cartFromIndex).
func indexFields(gens map[string]string, sid string, fields []string) []string {
	for f, g := range gens {
		if len(g) == len(sid)+1 && g[0] == '+' && g[1:] == sid {
			fields = append(fields, f)
		}
	}
	return fields
}

// carts reads the user's holds in the streams sids (and the record of idemHash
// there, if set).
func (s *RedisStore) carts(ctx context.Context, userID, idemHash string, sids []string, now time.Time) ([]cartOf, error) {
	if len(sids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.Cmd, len(sids))
	args := []any{userID, idemHash, micros(now)}
	done := s.batch.send(func(bctx context.Context, p redis.Pipeliner) {
		for i, sid := range sids {
			cmds[i] = s.evalInPipe(bctx, p, "cart", s.base(sid), args...)
		}
	})
	if err := wait(ctx, done); err != nil {
		return nil, err
	}
	out := make([]cartOf, len(sids))
	for i, c := range cmds {
		if isNoScript(c.Err()) { // Redis restarted: load it again
			c = s.scripts["cart"].Run(ctx, s.rdb, []string{s.base(sids[i])}, args...)
		}
		if c.Err() != nil {
			return nil, scriptError("cart", c.Err())
		}
		list, _ := c.Val().([]any)
		out[i].streamID = sids[i]
		if len(list) > 0 {
			out[i].idem, _ = list[0].(string)
			out[i].holds = rows(list[1:])
			for _, m := range out[i].holds {
				m["user_id"] = userID // (the record's newer form leaves it out: the cart's)
				expandHold(m)
				m["stream_id"] = sids[i]
			}
		}
	}
	return out, nil
}

// sortByCreation orders holds or orders of several streams oldest first.
func sortByCreation(ms []map[string]string) {
	sort.SliceStable(ms, func(i, j int) bool {
		a, b := atoi64(ms[i]["created_us"]), atoi64(ms[j]["created_us"])
		if a != b {
			return a < b
		}
		return atoi64(ms[i]["seq"]) < atoi64(ms[j]["seq"])
	})
}

// ListHolds returns the user's holds, oldest first.
func (s *RedisStore) ListHolds(ctx context.Context, userID string, now time.Time) ([]Hold, error) {
	sids, gens, err := s.cartStreams(ctx, userID)
	if err != nil {
		return nil, err
	}
	cs, err := s.carts(ctx, userID, "", sids, now)
	if err != nil {
		return nil, err
	}
	s.pruneCarts(userID, cs, gens)
	var all []map[string]string
	for _, c := range cs {
		all = append(all, c.holds...)
	}
	sortByCreation(all)
	out := make([]Hold, len(all))
	for i, m := range all {
		out[i] = holdFromHash(m, now)
	}
	return out, nil
}

// RemoveHold removes the user's hold; a live hold's units go back at once.
func (s *RedisStore) RemoveHold(ctx context.Context, userID, holdID string, now time.Time) (Changes, error) {
	sid, err := s.streamOfHold(ctx, userID, holdID)
	if err != nil {
		return Changes{}, err
	}
	r, err := s.run(ctx, "hold_remove", sid, userID, holdID)
	if err == nil { // (its member in either set: see holdDueMember; best effort: a stale entry is harmless)
		s.forgetDue(ctx, holdDueKey, sid, []string{holdID + " " + userID})
		s.forgetDue(ctx, olderHoldDueKey, sid, []string{holdID})
	}
	return changesOf(&r), err
}

// streamOfHold finds the stream of one of the user's holds.
func (s *RedisStore) streamOfHold(ctx context.Context, userID, holdID string) (string, error) {
	sids, _, err := s.cartStreams(ctx, userID)
	if err != nil {
		return "", err
	}
	// (In the user's cart there, or of the older form, its own key: see lua/lib.lua.
	// A cart of the older form, a list, answers the HEXISTS WRONGTYPE.)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(sids))
	in := make([]*redis.BoolCmd, len(sids))
	for i, sid := range sids {
		in[i] = pipe.HExists(ctx, s.base(sid)+"uh:"+userID, holdID)
		cmds[i] = pipe.Exists(ctx, s.base(sid)+"h:"+holdID)
	}
	if len(sids) > 0 {
		pipe.Exec(ctx)
	}
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			return "", unavailable(err)
		}
		if err := in[i].Err(); err != nil && !redis.HasErrorPrefix(err, "WRONGTYPE") {
			return "", unavailable(err)
		}
		if c.Val() == 1 || in[i].Val() {
			return sids[i], nil
		}
	}
	return "", fmt.Errorf("hold %s: %w", holdID, ErrNotFound)
}

// defaultReleaseBatch bounds a sweep when the caller gives no max.
const defaultReleaseBatch = 1000

// releaseArgs bounds the holds one release script call looks at (holddue:b entries
// name up to maxHoldBatch holds each).
const releaseArgs = 500

// ReleaseExpiredHolds returns the units of due holds. The global due sets say which
// streams have holds that may be due (see holdBatchDueKey: holddue:b the batches of
// holds made since 2026-12-06, holddue:u and holddue the holds made before, one entry
// each); each stream's script releases them (a hold once) and the entries are dropped
// after (a batch's holds not due yet get an entry of their own first). Batches go on
// until max holds are released or nothing due is left, so stale entries (ordered
// holds) cannot hide a due hold from one call. Idempotency keys expire by TTL.
func (s *RedisStore) ReleaseExpiredHolds(ctx context.Context, now time.Time, max int) (int, Changes, error) {
	if max <= 0 {
		max = defaultReleaseBatch
	}
	released, ch := 0, Changes{}
	for _, key := range []string{holdBatchDueKey, holdDueKey, olderHoldDueKey} {
		for released < max {
			release := s.releaseBatch
			if key == holdBatchDueKey {
				release = s.releaseHoldBatches
			}
			n, c, more, err := release(ctx, key, now, max-released)
			released += n
			ch.Products = append(ch.Products, c.Products...)
			ch.Sales = append(ch.Sales, c.Sales...)
			if err != nil {
				sortChanges(&ch)
				return released, ch, err
			}
			if !more {
				break
			}
		}
	}
	sortChanges(&ch)
	return released, ch, nil
}

// dueMembers returns the first max members of the sorted set key (a due set: scored by
// the time in µs they are due at) that are due at now.
func (s *RedisStore) dueMembers(ctx context.Context, key string, now time.Time, max int) ([]string, error) {
	return s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: key, Start: "-inf", Stop: micros(now), ByScore: true, Count: int64(max),
	}).Result()
}

// releaseBatch releases up to max due holds among the first max due entries of the
// due set key; more says whether due entries may be left.
func (s *RedisStore) releaseBatch(ctx context.Context, key string, now time.Time, max int) (int, Changes, bool, error) {
	members, err := s.dueMembers(ctx, s.prefix+key, now, max)
	if err != nil {
		return 0, Changes{}, false, unavailable(err)
	}
	released, ch := 0, Changes{}
	for _, g := range groupByStream(members) {
		if released >= max {
			break
		}
		budget := max - released
		args := append([]any{micros(now), budget}, g.args()...)
		r, err := s.run(ctx, "release", g.streamID, args...)
		if err != nil {
			return released, ch, false, err
		}
		released += r.N
		ch = mergeChanges(ch, changesOf(&r))
		if r.N < budget { // every listed hold was looked at: forget them
			if err := s.forgetDue(ctx, key, g.streamID, g.ids); err != nil {
				return released, ch, false, err
			}
		}
	}
	return released, ch, len(members) == max, nil
}

// releaseHoldBatches releases up to max due holds of the first max due entries of
// holddue:b (key; see holdBatchDueKey); more says whether due entries may be left.
// The holds of an entry that are live and not due yet (the entry is due at its first
// hold's expiry) go in a new entry, due at the first of theirs, before it is dropped.
// An entry not of the batch form is dropped.
func (s *RedisStore) releaseHoldBatches(ctx context.Context, key string, now time.Time, max int) (int, Changes, bool, error) {
	key = s.prefix + key
	members, err := s.dueMembers(ctx, key, now, max)
	if err != nil {
		return 0, Changes{}, false, unavailable(err)
	}
	groups, err := s.dueHoldGroups(ctx, key, members)
	if err != nil {
		return 0, Changes{}, false, err
	}
	released, ch := 0, Changes{}
	for _, g := range groups {
		if released >= max {
			break
		}
		n, gch, err := s.releaseHoldGroup(ctx, key, g, now, max-released)
		released += n
		ch = mergeChanges(ch, gch)
		if err != nil {
			return released, ch, false, err
		}
	}
	return released, ch, len(members) == max, nil
}

// dueHoldGroup is a stream's due entries of holddue:b that still have a cart, and
// their holds.
type dueHoldGroup struct {
	sid     string
	members []any
	holds   []string // "hid uid" each (see lua/release.lua)
}

// dueHoldGroups drops, from the due set key, the members (due entries) that are
// malformed or whose holds' carts are all gone, and groups the rest by stream.
// An entry whose holds' carts are all gone (every hold ordered or removed, the
// usual case) goes without a script: one EXISTS of the carts per entry, pipelined
// (the carts of a stream share its slot). No hold of it can appear later: a
// hold's entry is written before its script runs, and is due only at its expiry. An
// entry with a cart left (a hold in it, or another of the user's; or a cart of the
// older form, a list) goes to the release script, which looks at each hold.
func (s *RedisStore) dueHoldGroups(ctx context.Context, key string, members []string) ([]*dueHoldGroup, error) {
	type entry struct {
		m     string
		sid   string
		holds []string
		carts *redis.IntCmd
	}
	var entries []*entry
	var gone []any // entries to drop at once: malformed, or every cart gone
	pipe := s.rdb.Pipeline()
	for _, m := range members {
		sid, holds, ok := parseHoldBatch(m)
		if !ok {
			gone = append(gone, m)
			continue
		}
		keys, cart := make([]string, len(holds)), s.base(sid)+"uh:"
		for i, h := range holds {
			_, uid, _ := strings.Cut(h, " ")
			keys[i] = cart + uid
		}
		entries = append(entries, &entry{m: m, sid: sid, holds: holds, carts: pipe.Exists(ctx, keys...)})
	}
	if len(entries) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, unavailable(err)
		}
	}
	groups, index := []*dueHoldGroup{}, map[string]*dueHoldGroup{}
	for _, e := range entries {
		if e.carts.Val() == 0 {
			gone = append(gone, e.m)
			continue
		}
		g := index[e.sid]
		if g == nil {
			g = &dueHoldGroup{sid: e.sid}
			index[e.sid] = g
			groups = append(groups, g)
		}
		g.members = append(g.members, e.m)
		g.holds = append(g.holds, e.holds...)
	}
	if len(gone) > 0 {
		if err := s.rdb.ZRem(ctx, key, gone...).Err(); err != nil {
			return nil, unavailable(err)
		}
	}
	return groups, nil
}

// releaseHoldGroup runs the release script over a group's holds, at most releaseArgs
// per call (a call blocks Redis) and at most budget released. When every listed hold
// was looked at (no call used up its budget), the ones not due yet get an entry of
// their own in the due set key, due at the first of them, and the group's entries go;
// otherwise the entries stay for the next sweep.
func (s *RedisStore) releaseHoldGroup(ctx context.Context, key string, g *dueHoldGroup, now time.Time, budget int) (int, Changes, error) {
	released, ch := 0, Changes{}
	var ids, uids []string // the holds not due yet
	var dueUS int64
	for from := 0; from < len(g.holds); from += releaseArgs {
		chunk := g.holds[from:min(from+releaseArgs, len(g.holds))]
		left := budget - released
		args := make([]any, 2, 2+len(chunk))
		args[0], args[1] = micros(now), left
		for _, h := range chunk {
			args = append(args, h)
		}
		r, err := s.run(ctx, "release", g.sid, args...)
		if err != nil {
			return released, ch, err
		}
		released += r.N
		ch = mergeChanges(ch, changesOf(&r))
		if r.N >= left { // some listed holds may not have been looked at: the entries stay
			return released, ch, nil
		}
		for later := r.Later; later != ""; {
			var one string
			one, later, _ = strings.Cut(later, ",")
			i, at, _ := strings.Cut(one, " ")
			k, us := atoi64(i), atoi64(at)
			if k < 1 || int(k) > len(chunk) {
				return released, ch, fmt.Errorf("redis script release: bad later %q", one)
			}
			id, uid, _ := strings.Cut(chunk[k-1], " ")
			ids, uids = append(ids, id), append(uids, uid)
			if len(ids) == 1 || us < dueUS {
				dueUS = us
			}
		}
	}
	pipe := s.rdb.Pipeline()
	gone := g.members
	if len(ids) > 0 {
		m := holdBatchMember(g.sid, ids, uids)
		pipe.ZAdd(ctx, key, redis.Z{Score: float64(dueUS), Member: m})
		gone = slices.DeleteFunc(gone, func(x any) bool { return x == any(m) }) // (the same entry, due later)
	}
	if len(gone) > 0 {
		pipe.ZRem(ctx, key, gone...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return released, ch, unavailable(err)
	}
	return released, ch, nil
}

// forgetDue drops holds (released, ordered or removed) from the global due set key.
func (s *RedisStore) forgetDue(ctx context.Context, key, streamID string, holdIDs []string) error {
	if len(holdIDs) == 0 {
		return nil
	}
	members := make([]any, len(holdIDs))
	for i, id := range holdIDs {
		members[i] = dueMember(streamID, id)
	}
	return unavailable(s.rdb.ZRem(ctx, s.prefix+key, members...).Err())
}

// idempotency key states (the user's key P{u:<uid>}:idem:<hash>)
const (
	idemPendingTTL = 5 * time.Second // covers one checkout; then the key may be taken over
	idemWait       = 2 * time.Second // how long a concurrent same-key call waits
	// idemAnswerMargin: a same-key call with a deadline stops waiting this long before
	// it, to answer conflict in time.
	idemAnswerMargin = 100 * time.Millisecond
)

// idemHash names an idempotency key of a user.
func idemHash(userID, key string) string { return idemField(userID, key)[2:] }

// idemField is the field "k:" + idemHash(userID, key) of the key's record in the
// user's orders of a stream (see lua/checkout.lua): one string for both.
func idemField(userID, key string) string {
	var buf [256]byte // on the stack for the usual ids and keys
	h := sha256.Sum256(append(append(append(buf[:0], userID...), 0), key...))
	var out [2 + 2*sha256.Size]byte
	out[0], out[1] = 'k', ':'
	hex.Encode(out[2:], h[:])
	return string(out[:])
}

// Checkout places an order from the user's holds. The user's key marks a checkout in
// progress (so concurrent calls with one key place one order, in whatever stream) and
// keeps that pending mark for 24 h; the stream's own record of the key, written by the
// script with the order, is what makes a retry return the same order (see claimIdem:
// no done mark is written after the order). Keys older than 24 h (by now) are
// forgotten; Redis drops them by TTL. The request's fingerprint is kept as
// storedFingerprint makes it.
func (s *RedisStore) Checkout(ctx context.Context, req CheckoutRequest, now time.Time) (CheckoutResult, error) {
	req.Fingerprint = storedFingerprint(req.Fingerprint)
	kf := idemField(req.UserID, req.IdempotencyKey)
	ih := kf[2:]
	// The call first: a plain claim answers the cart into it (c.cart).
	c := checkoutCalls.Get().(*checkoutCall)
	token, cart, done, err := s.claimIdem(ctx, req.UserID, ih, req.Fingerprint, req.StreamID, now, &c.cart)
	if err != nil || done != nil {
		*c = checkoutCall{}
		checkoutCalls.Put(c)
		if done != nil {
			return *done, nil
		}
		return CheckoutResult{}, err
	}
	c.req, c.ih, c.kf, c.now, c.indexed, c.orders = req, ih, kf, now, cart.indexed, cart.orders
	var res CheckoutResult
	err = s.checkoutTo(ctx, c, cart, &res)
	s.settle(ctx, c, cart, token, &res, err)
	if !c.left {
		*c = checkoutCall{}
		checkoutCalls.Put(c)
	}
	return res, err
}

// checkoutCalls are Checkout's calls. A call goes back once settled, unless one of
// its script runs was left waiting (left: that batch may still read the call's
// arguments). One heap object of ~240 bytes less per checkout, and the plain claim's
// cart (userCart, its cart field) another.
var checkoutCalls = sync.Pool{New: func() any { return new(checkoutCall) }}

// storedFingerprint is a checkout's fingerprint as the Redis store writes it in the
// key's marks and the stream's key record: "" for the usual body's (the empty body,
// every storm checkout's), which was written in full (64 hex digits) before
// 2026-12-06; any other as it is. The full form is 64 bytes that redis-server copied,
// parsed and hashed four times per checkout (the claim's mark, the checkout script's
// argument and its key record, the done mark). Marks and records of either form are
// compared by sameFingerprint (and by checkout.lua, see empty_fp there).
func storedFingerprint(fp string) string {
	if fp == emptyCheckoutFingerprint {
		return ""
	}
	return fp
}

// sameFingerprint says whether a stored fingerprint (a mark's or a key record's, of
// either form) is fp, a request's as storedFingerprint made it.
func sameFingerprint(stored, fp string) bool {
	return stored == fp || (fp == "" && stored == emptyCheckoutFingerprint)
}

// settle leaves the order to the stream's record of the key and forgets the stream
// from the user's cart index if the order emptied it there, or frees the key if
// nothing was ordered. (Not inlined, as Checkout's frame is on the stack through the
// checkout.)
//
//go:noinline
func (s *RedisStore) settle(ctx context.Context, c *checkoutCall, cart *userCart, token string, res *CheckoutResult, err error) {
	switch {
	case err == nil:
		// No done mark: the key keeps its pending mark, and the stream's record of the
		// key (written by the script with the order) answers a retry (see claimIdem).
		// What is left is the cart index's fields of a stream the order emptied.
		if c.emptied != "" {
			s.finishCheckout(c.req.UserID, cart, c.ih, "", c.emptied)
		}
	case !errors.Is(err, ErrUnavailable):
		// Nothing was ordered: the key is free for another attempt.
		s.scripts["unclaim"].Run(ctx, s.rdb, []string{s.userBase(c.req.UserID)}, c.ih, token)
	}
}

// finishCheckout writes, off the request's path, a done mark of the key (value: done|
// sid|oid|at_us|fp, unless "") and forgets the stream emptied (unless "") from the
// user's cart index.
//
// The done mark. Since 2026-12-06 a checkout that places its order writes none: its
// key keeps its pending mark (24 h), and the stream's record of the key, which the
// checkout script writes with the order, is what a retry finds (see claimIdem: a key
// with a pending mark, whose time ran out or not, is looked for in the streams of the
// user's order index, which lists the stream before the order is placed). A retry
// that found the order so and took the key over (its mark had run out) writes the
// done mark, so later ones read it (keyRecordAnswer); a done mark written before, or by a
// node of before, is read as ever. The mark keeps the key's time to live, 24 h from
// its claim (SET … KEEPTTL), and replaces only a key that exists (XX): a mark lost
// meanwhile (Redis restarted without it) is not made anew with no time to live.
//
// The stream emptied leaves the user's cart index unless a hold came since (so the
// user's next checkout elsewhere takes the one-stream path): the generations' fields
// of it that the claim read (gens, see cartFromIndex) are deleted (a hold that raced
// the order added a field of its own); a field of the earlier form (stream →
// generation) gets its "~" record instead (the generation the claim read; "0" if
// neither form named the stream), so the cart index forgets it (see lua/claim.lua).
// If it is lost, the next cart read prunes.
//
// The key's and the cart index's names are the plain claim's (cart.idemKey,
// cart.genKey: no string made again per checkout), else made here.
func (s *RedisStore) finishCheckout(userID string, cart *userCart, ih, value, emptied string) {
	gens := cart.gens
	f := doneMarks.Get().(*doneMark) // nobody waits (done nil); its batch puts it back
	if value != "" {
		f.key, f.value = cart.idemKey, value
		if f.key == "" {
			f.key = s.userKey(userID, "idem:"+ih)
		}
		f.set = [...]any{"set", &f.key, &f.value, "xx", "keepttl"}
	}
	if emptied != "" {
		if f.gen = cart.genKey; f.gen == "" {
			f.gen = s.userKey(userID, "gen")
		}
		f.fields = indexFields(gens, emptied, f.one[:0])
		if gen, ok := gens[emptied]; ok || len(f.fields) == 0 {
			f.field, f.g = "~"+emptied, cmp.Or(gen, "0")
			f.hset = [...]any{"hset", &f.gen, &f.field, &f.g}
		}
		if len(f.fields) == 1 {
			f.hdel1 = [...]any{"hdel", &f.gen, &f.fields[0]}
			f.hdel = f.hdel1[:]
		} else if len(f.fields) > 1 {
			f.hdel = append(f.hdel, "hdel", &f.gen)
			for i := range f.fields {
				f.hdel = append(f.hdel, &f.fields[i])
			}
		}
	}
	s.batch.queue(&f.pipeCall)
}

// doneMark is the done mark's call in the shared pipeline (its own pipeAdder) and
// what its commands point to (see evalArgs).
type doneMark struct {
	pipeCall
	set                       [5]any
	hset                      [4]any
	hdel1                     [3]any
	hdel                      []any
	key, value, gen, field, g string
	fields                    []string
	one                       [1]string
}

// doneMarks are finishCheckout's marks, each its own pipeAdder; the batch that sent
// one hands it back (release) once done with it. One heap object of ~380 bytes less
// per checkout.
var doneMarks = sync.Pool{New: func() any {
	f := &doneMark{}
	f.add = f
	return f
}}

// release puts the mark back into doneMarks (its batch's last use of it).
func (f *doneMark) release() {
	*f = doneMark{pipeCall: f.pipeCall}
	doneMarks.Put(f)
}

func (f *doneMark) addTo(ctx context.Context, p redis.Pipeliner) {
	if f.value != "" {
		p.Do(ctx, f.set[:]...)
	}
	if f.hdel != nil {
		p.Do(ctx, f.hdel...)
	}
	if f.field != "" {
		p.Do(ctx, f.hset[:]...)
	}
}

// claimIdem takes the user's idempotency key for this call (answering its token and
// the streams of the user's cart), or answers the order an earlier call with the key
// placed, or ErrConflict. A key in use is judged by its mark: a done mark names its
// order; a pending mark is a checkout in progress or one that placed its order (an
// order leaves its pending mark, see settle), told apart by the key's record in the
// streams of the user's order index, which lists a stream before an order is placed
// there: found, it answers (keyRecordAnswer); not found, a call with another body is
// a conflict and one with the same body waits for it, as for a checkout in progress,
// until the mark runs out and the key is taken over. A plain claim answers the cart
// into into if not nil (Checkout's call holds it); a claim by script, or a nil into,
// answers a cart of its own.
func (s *RedisStore) claimIdem(ctx context.Context, userID, ih, fingerprint, streamID string, now time.Time, into *userCart) (string, *userCart, *CheckoutResult, error) {
	deadline := time.Now().Add(idemWait)
	// A caller with a deadline (an API request's bound) gets the answer for a key in
	// progress (conflict) before it, rather than unavailable.
	if d, ok := ctx.Deadline(); ok && d.Add(-idemAnswerMargin).Before(deadline) {
		deadline = d.Add(-idemAnswerMargin)
	}
	// A new key is taken without a script where it can be (see claimPlain); a key in
	// use goes by claim.lua.
	if s.plainClaims.Load() && s.cartSetsGone.Load() {
		withTime := s.clock.wantSample()
		token, cart, used, err := s.claimPlain(ctx, userID, ih, fingerprint, now, withTime, into)
		if err == nil {
			return token, cart, nil, nil
		}
		if err != errClaimByScript {
			return "", nil, nil, err
		}
		if withTime && !used {
			s.clock.asking.Store(false) // the script's call below may carry it
		}
	}
	token := tokenAt(randomToken(), now)
	// The call in the shared pipeline, and what its arguments point to (see evalArgs).
	ca := &claimCall{key: s.userBase(userID), ih: ih, token: token, fp: fingerprint, sid: streamID,
		nowUS: now.UnixMicro(), ttl: idemPendingTTL.Milliseconds()}
	ca.pipeCall.add = ca
	for {
		ca.withTime = s.clock.wantSample()
		ca.old = "1" // the cart index's older form may be left (see migrateCartSets)
		if s.cartSetsGone.Load() {
			ca.old = ""
		}
		ca.args = [...]any{"evalsha", s.shas["claim"], 1, &ca.key, &ca.ih, &ca.token, &ca.fp, &ca.nowUS, &ca.ttl, &ca.sid, &ca.old}
		ca.done = make(chan struct{})
		s.batch.queue(&ca.pipeCall)
		err := wait(ctx, ca.done)
		if ca.withTime {
			if err != nil {
				s.clock.took(time.Time{}, time.Time{}, err)
			} else {
				s.clock.took(ca.time.Val(), ca.sent, ca.time.Err())
			}
		}
		if err != nil {
			return "", nil, nil, err
		}
		cmd := ca.cmd
		if isNoScript(cmd.Err()) {
			cmd = s.scripts["claim"].Run(ctx, s.rdb, []string{ca.key}, ca.args[4:]...)
		}
		v, cart, err := claimReply(cmd, streamID)
		if err != nil {
			return "", nil, nil, err
		}
		if cart != nil {
			if cart.reclaimed {
				// The key's mark ran out: an attempt that died or lost its answer, or one
				// that placed its order (no done mark follows an order, see settle). The
				// stream's record of the key answers, if there is one.
				if res, err := s.keyRecordAnswer(ctx, userID, ih, fingerprint, cart.sids, now, true); res != nil || err != nil {
					return "", nil, res, err
				}
			}
			return token, cart, nil, nil
		}
		if strings.HasPrefix(v, "done|") {
			f := strings.SplitN(v, "|", 5) // done|sid|oid|at_us|fp
			if len(f) != 5 {
				return "", nil, nil, fmt.Errorf("%s: %w", msgIdempotencyKeyReused, ErrConflict)
			}
			res, err := s.keyOrder(ctx, userID, f[1], f[2], f[4], fingerprint)
			return "", nil, res, err
		}
		// A pending mark: a checkout in progress, or one that placed its order (no done
		// mark follows, see settle), with this body or another: the stream's record of
		// the key answers, if there is one.
		if res, err := s.keyRecordAnswer(ctx, userID, ih, fingerprint, nil, now, false); res != nil || err != nil {
			return "", nil, res, err
		}
		if f := strings.SplitN(v, "|", 4); len(f) < 3 || !sameFingerprint(f[2], fingerprint) { // pending|token|fp|until
			return "", nil, nil, fmt.Errorf("%s: %w", msgIdempotencyKeyReused, ErrConflict)
		}
		if time.Now().After(deadline) {
			return "", nil, nil, fmt.Errorf("a checkout with this idempotency key is in progress: %w", ErrConflict)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return "", nil, nil, fmt.Errorf("a checkout with this idempotency key is in progress: %w", ErrConflict)
			}
			return "", nil, nil, unavailable(ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// claimCall is a claim's call in the shared pipeline (its own pipeAdder) and what its
// arguments point to (see evalArgs).
type claimCall struct {
	pipeCall
	args                         [11]any
	cmd                          *redis.Cmd
	key, ih, token, fp, sid, old string
	nowUS, ttl                   int64
	// withTime: the call carries a TIME for the plain claims' clock (see redisClock),
	// sent before the pipeline went.
	withTime bool
	time     *redis.TimeCmd
	sent     time.Time
}

func (c *claimCall) addTo(ctx context.Context, p redis.Pipeliner) {
	if c.withTime {
		c.sent = time.Now()
		c.time = p.Time(ctx)
	}
	c.cmd = p.Do(ctx, c.args[:]...)
}

// claimReply reads claim.lua's answer: "claimed" or "reclaimed" and the user's cart
// (then listed in the user's order index: the given stream, else the cart's only one,
// as the script did), or the key's value.
func claimReply(cmd *redis.Cmd, streamID string) (string, *userCart, error) {
	raw, err := cmd.Slice()
	v, ok := "", len(raw) > 0
	if ok {
		v, ok = raw[0].(string)
	}
	if err != nil || !ok {
		return "", nil, scriptError("claim", cmp.Or(err, errors.New("bad reply")))
	}
	if v != "claimed" && v != "reclaimed" {
		return v, nil, nil
	}
	cart := &userCart{gens: make(map[string]string, len(raw)/2), reclaimed: v == "reclaimed"}
	if n := (len(raw) - 1) / 2; n > 0 {
		cart.sids = make([]string, 0, n)
	}
	for i := 1; i+1 < len(raw); i += 2 { // the index's fields and values (see cartFromIndex)
		f, _ := raw[i].(string)
		gen, _ := raw[i+1].(string)
		sid := f
		if s, ok := strings.CutPrefix(gen, "+"); ok {
			sid = s
		}
		cart.sids = append(cart.sids, sid)
		cart.gens[f] = gen
	}
	sort.Strings(cart.sids)
	cart.sids = slices.Compact(cart.sids)
	cart.indexed = streamID
	if streamID == "" && len(raw) == 3 { // one field: the script listed its stream
		cart.indexed = cart.sids[0]
	}
	return v, cart, nil
}

// tokenAt is a claim's token: random, then ":" and the call's now in µs (by the node's
// clock, as the stream's record of the key and a done mark have it), by which
// claim.lua forgets a pending mark 24 h old as it does a done mark (an order leaves
// its pending mark, see settle). A token never holds "|".
func tokenAt(random string, now time.Time) string {
	return random + ":" + strconv.FormatInt(now.UnixMicro(), 10)
}

func randomToken() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// getOrder reads the user's order in the stream: from the user's orders there (the
// hash uo:<uid>, see lua/checkout.lua), else in the older form (the hash o:<oid>).
func (s *RedisStore) getOrder(ctx context.Context, userID, streamID, orderID string) (Order, error) {
	pipe := s.rdb.Pipeline()
	d := pipe.HGet(ctx, s.base(streamID)+"uo:"+userID, orderID)
	older := pipe.HGetAll(ctx, s.base(streamID)+"o:"+orderID)
	pipe.Exec(ctx)
	if err := d.Err(); err == nil {
		return orderFromHash(map[string]string{"d": d.Val(), "id": orderID, "stream_id": streamID, "user_id": userID}), nil
	} else if err != redis.Nil && !redis.HasErrorPrefix(err, "WRONGTYPE") {
		return Order{}, unavailable(err)
	}
	m, err := older.Result()
	if err != nil {
		return Order{}, unavailable(err)
	}
	if len(m) == 0 {
		return Order{}, fmt.Errorf("order %s: %w", orderID, ErrNotFound)
	}
	m["id"], m["stream_id"] = orderID, streamID // (the record's newer form leaves them out)
	return orderFromHash(m), nil
}

// checkoutCall is one Checkout on its way through the scripts.
type checkoutCall struct {
	req     CheckoutRequest
	ih      string // the idempotency key's hash
	kf      string // its field in the user's orders of a stream, "k:" + ih (see lua/checkout.lua); set by args
	now     time.Time
	cart    userCart // the plain claim's answer (see Checkout)
	emptied string   // the stream where the order left the user's cart empty
	indexed string   // the stream the user's order index lists already (see claim.lua)
	orders  string   // the user's order index's key, if the claim made it
	// Set by args: now in µs, what a script call's arguments point to (see evalArgs;
	// one script call at a time), and in UTC, to the µs (a new order's created_at, as
	// its record keeps it).
	nowUTC time.Time
	nowUS  int64
	left   bool // a script run of the call stopped waiting for its batch (see checkoutCalls)
}

// userCart is the streams of a user's cart and the cart index's fields that name
// them, as claim read them (field → value, see cartFromIndex).
type userCart struct {
	sids    []string
	gens    map[string]string
	indexed string // the stream the claim listed in the user's order index
	orders  string // the user's order index's key, if the claim made it (plain claims)
	// The user's key and cart index's names, if the claim made them (plain claims):
	// the done mark's (see finishCheckout).
	idemKey, genKey string
	// reclaimed: the claim took over the key from an attempt that died or lost its
	// answer, which may have placed its order (see lua/claim.lua)
	reclaimed bool
	one       [1]string // sids' array when the index has one field (fromIndex)
}

// checkout picks the stream the request orders from and runs its checkout script.
func (s *RedisStore) checkout(ctx context.Context, c *checkoutCall, cart *userCart) (CheckoutResult, error) {
	var res CheckoutResult
	err := s.checkoutTo(ctx, c, cart, &res)
	return res, err
}

// checkoutTo is checkout answering in res. The usual checkouts' path passes one
// result by pointer instead of returning copies: its frames are what a connection's
// goroutine needs of stack, which the collector shrinks between requests, and a
// checkout grew it again (runtime.newstack, copystack: ~3 % of a server's CPU).
func (s *RedisStore) checkoutTo(ctx context.Context, c *checkoutCall, cart *userCart, res *CheckoutResult) error {
	if !cart.reclaimed {
		switch {
		case c.req.StreamID != "":
			err := s.checkoutInto(ctx, c, c.req.StreamID, "", res)
			// The script swept its stream: the whole cart if the cart has no other.
			res.CartCleared = res.CartCleared && len(cart.sids) <= 1 && (len(cart.sids) == 0 || cart.sids[0] == c.req.StreamID)
			return err
		case len(cart.sids) == 1:
			// One stream in the cart (the usual case): its script decides everything,
			// including a replay from the key's record there.
			return s.checkoutInto(ctx, c, cart.sids[0], "", res)
		}
	}
	var err error
	*res, err = s.checkoutAny(ctx, c, cart)
	return err
}

// checkoutAny is checkout of any cart (not inlined: the usual one keeps its frame
// small, see checkoutScript).
//
//go:noinline
func (s *RedisStore) checkoutAny(ctx context.Context, c *checkoutCall, cart *userCart) (CheckoutResult, error) {
	sids := cart.sids
	if cart.reclaimed {
		sid, err := s.keyRecordStream(ctx, c, sids)
		if err != nil {
			return CheckoutResult{}, err
		}
		if sid != "" { // the earlier attempt ordered there: its script answers
			return s.checkoutStream(ctx, c, sid, "")
		}
	}
	switch {
	case c.req.StreamID != "":
		res, err := s.checkoutStream(ctx, c, c.req.StreamID, "")
		// The script swept its stream: the whole cart if the cart has no other.
		res.CartCleared = res.CartCleared && len(sids) <= 1 && (len(sids) == 0 || sids[0] == c.req.StreamID)
		return res, err
	case len(sids) == 1:
		// One stream in the cart (the usual case): its script decides everything,
		// including a replay from the key's record there.
		return s.checkoutStream(ctx, c, sids[0], "")
	}
	cs, err := s.carts(ctx, c.req.UserID, c.ih, sids, c.now)
	if err != nil {
		return CheckoutResult{}, err
	}
	s.pruneCarts(c.req.UserID, cs, cart.gens)
	for _, cart := range cs {
		if cart.idem != "" { // an earlier attempt with this key ordered here
			return s.checkoutStream(ctx, c, cart.streamID, "")
		}
	}
	if c.req.HoldIDs != nil {
		return s.checkoutIDs(ctx, c, cs)
	}
	return s.checkoutCart(ctx, c, cs)
}

// keyRecordStream finds the stream where an earlier attempt with the call's key placed
// its order ("" if none): its stream may have left the cart index since (the cart was
// read empty there), but the order index lists it before the order is placed.
func (s *RedisStore) keyRecordStream(ctx context.Context, c *checkoutCall, cartSids []string) (string, error) {
	sid, _, err := s.keyRecord(ctx, c.req.UserID, c.ih, cartSids, c.now)
	return sid, err
}

// keyRecord finds the record of the key ih (order id|at_us|fingerprint, of the last
// 24 h by now) in the streams of the user's order index and sids, and its stream ("",
// "" if none).
func (s *RedisStore) keyRecord(ctx context.Context, userID, ih string, sids []string, now time.Time) (sid, rec string, err error) {
	ordered, err := s.rdb.SMembers(ctx, s.userBase(userID)+"orders").Result()
	if err != nil {
		return "", "", unavailable(err)
	}
	all := append(slices.Clone(sids), ordered...)
	slices.Sort(all)
	cs, err := s.carts(ctx, userID, ih, slices.Compact(all), now)
	if err != nil {
		return "", "", err
	}
	for _, cart := range cs {
		if cart.idem != "" {
			return cart.streamID, cart.idem, nil
		}
	}
	return "", "", nil
}

// keyRecordAnswer answers a call with key ih and fingerprint fp from the key's record
// in the user's streams (see keyRecord): the order it names, or a conflict if it was
// placed with another body; nil and nil if no stream has the record. took: the call
// took the key over (its pending mark had run out); it writes the done mark, so a
// later call with the key reads it instead of looking again.
func (s *RedisStore) keyRecordAnswer(ctx context.Context, userID, ih, fp string, sids []string, now time.Time, took bool) (*CheckoutResult, error) {
	sid, rec, err := s.keyRecord(ctx, userID, ih, sids, now)
	if err != nil || rec == "" {
		return nil, err
	}
	f := strings.SplitN(rec, "|", 3)
	if len(f) != 3 {
		return nil, fmt.Errorf("redis: the record of an idempotency key in stream %s: %q", sid, rec)
	}
	if took {
		s.finishCheckout(userID, &userCart{}, ih, "done|"+sid+"|"+rec, "")
	}
	return s.keyOrder(ctx, userID, sid, f[0], f[2], fp)
}

// keyOrder answers a call with fingerprint fp whose key names order oid of stream sid,
// placed with fingerprint stored (a done mark's or the stream's record of the key):
// that order, or a conflict if it was placed with another body.
func (s *RedisStore) keyOrder(ctx context.Context, userID, sid, oid, stored, fp string) (*CheckoutResult, error) {
	if !sameFingerprint(stored, fp) {
		return nil, fmt.Errorf("%s: %w", msgIdempotencyKeyReused, ErrConflict)
	}
	o, err := s.getOrder(ctx, userID, sid, oid)
	if err != nil {
		return nil, err
	}
	return &CheckoutResult{Order: o}, nil
}

// checkoutCart orders the user's whole cart: it must have live holds of exactly one
// stream. The expired holds of the other streams are cleared too.
func (s *RedisStore) checkoutCart(ctx context.Context, c *checkoutCall, cs []cartOf) (CheckoutResult, error) {
	var live, stale []string
	for _, cart := range cs {
		hasLive, hasExpired := false, false
		for _, m := range cart.holds {
			if holdFromHash(m, c.now).Expired {
				hasExpired = true
			} else {
				hasLive = true
			}
		}
		if hasLive {
			live = append(live, cart.streamID)
		}
		if hasExpired {
			stale = append(stale, cart.streamID)
		}
	}
	target := ""
	if len(live) == 1 {
		target = live[0]
	}
	res := CheckoutResult{}
	var cleared []string
	for _, sid := range stale {
		if sid == target {
			continue // its own checkout clears them
		}
		ids, ch, err := s.clearExpired(ctx, c, sid, nil)
		res.Changes = mergeChanges(res.Changes, ch)
		if err != nil {
			return res, err
		}
		cleared = append(cleared, ids...)
	}
	switch {
	case len(live) > 1:
		return res, fmt.Errorf("%s: %w", msgCartOfSeveralStreams, ErrConflict)
	case len(live) == 0 && len(cleared) > 0:
		return res, fmt.Errorf("every hold in the cart has expired: %w", ErrHoldExpired)
	case len(live) == 0:
		return res, fmt.Errorf("the cart is empty: %w", ErrConflict)
	}
	r, err := s.checkoutStream(ctx, c, target, strings.Join(cleared, ","))
	r.Changes = mergeChanges(res.Changes, r.Changes)
	return r, err
}

// checkoutIDs orders exactly the listed holds, which must be of one stream.
func (s *RedisStore) checkoutIDs(ctx context.Context, c *checkoutCall, cs []cartOf) (CheckoutResult, error) {
	where := map[string]string{}
	for _, cart := range cs {
		for _, m := range cart.holds {
			where[m["id"]] = cart.streamID
		}
	}
	byStream := map[string][]string{}
	var streams []string
	for _, id := range c.req.HoldIDs {
		sid, ok := where[id]
		if !ok {
			return CheckoutResult{}, fmt.Errorf("hold %s: %w", id, ErrNotFound)
		}
		if _, seen := byStream[sid]; !seen {
			streams = append(streams, sid)
		}
		byStream[sid] = append(byStream[sid], id)
	}
	switch len(streams) {
	case 0:
		return CheckoutResult{}, fmt.Errorf("the cart is empty: %w", ErrConflict)
	case 1:
		res, err := s.checkoutStream(ctx, c, streams[0], "")
		res.CartCleared = res.CartCleared && len(cs) == 1
		return res, err
	}
	res, expired := CheckoutResult{}, false
	for _, sid := range streams {
		ids, ch, err := s.clearExpired(ctx, c, sid, byStream[sid])
		res.Changes = mergeChanges(res.Changes, ch)
		if err != nil {
			return res, err
		}
		expired = expired || len(ids) > 0
	}
	if expired {
		return res, fmt.Errorf("some holds have expired: %w", ErrHoldExpired)
	}
	return res, fmt.Errorf("%s: %w", msgHoldsOfSeveralStreams, ErrConflict)
}

func mergeChanges(a, b Changes) Changes {
	a.Products = append(a.Products, b.Products...)
	a.Sales = append(a.Sales, b.Sales...)
	sortChanges(&a)
	return a
}

// checkoutArgs are one checkout's arguments of the checkout script (lua/checkout.lua),
// in a batch of the stream's checkouts.
type checkoutArgs struct {
	c    *checkoutCall
	n    int // how many: 7 + the hold ids, or 4 (the usual checkout's short form)
	ids  []string
	mode string // "all", "ids" or "clear" (see lua/checkout.lua)
	// otherExpired: the expired hold ids cleared in other streams, joined by ","
	otherExpired string
}

// args are the checkout script's arguments.
func (c *checkoutCall) args(mode, otherExpired string, ids []string) checkoutArgs {
	// (in µs, as the order's record keeps it: see lua/checkout.lua)
	c.nowUS = c.now.UnixMicro()
	c.nowUTC = time.UnixMicro(c.nowUS).UTC()
	if c.kf == "" {
		c.kf = "k:" + c.ih
	}
	n := 7 + len(ids)
	if mode == "all" && otherExpired == "" && c.req.Fingerprint == "" && len(ids) == 0 {
		n = 4 // the usual checkout's short form (see appendTo)
	}
	return checkoutArgs{c: c, n: n, ids: ids, mode: mode, otherExpired: otherExpired}
}

// appendTo appends the arguments, the values by pointer (see evalArgs). The usual
// checkout (mode "all", the usual body's fingerprint "", no expired holds cleared
// elsewhere, no hold ids) leaves those three out: 4 arguments, not 7 (each argument
// costs redis-server ~0.9k instructions to parse, intern in Lua and free).
func (a *checkoutArgs) appendTo(args []any) []any {
	c := a.c
	if a.n == 4 {
		return append(args, &c.req.UserID, &c.kf, &c.req.OrderID, &c.nowUS)
	}
	args = append(args, &c.req.UserID, &c.kf, &c.req.Fingerprint, &c.req.OrderID, &c.nowUS, &a.mode, &a.otherExpired)
	for i := range a.ids {
		args = append(args, &a.ids[i])
	}
	return args
}

// clearExpired clears the user's expired holds (of ids, or all) in one stream.
func (s *RedisStore) clearExpired(ctx context.Context, c *checkoutCall, sid string, ids []string) ([]string, Changes, error) {
	it, err := s.checkoutScript(ctx, c, sid, false, c.args("clear", "", ids))
	cleared, ch := splitList(it.r.Cleared, ","), changesOf(&it.r)
	it.release()
	return cleared, ch, err
}

// checkoutStream runs the checkout script on one stream.
func (s *RedisStore) checkoutStream(ctx context.Context, c *checkoutCall, sid, otherExpired string) (CheckoutResult, error) {
	var res CheckoutResult
	err := s.checkoutInto(ctx, c, sid, otherExpired, &res)
	return res, err
}

// checkoutInto is checkoutStream answering in res (see checkoutTo).
func (s *RedisStore) checkoutInto(ctx context.Context, c *checkoutCall, sid, otherExpired string, res *CheckoutResult) error {
	mode := "all"
	if c.req.HoldIDs != nil {
		mode = "ids"
	}
	it, err := s.checkoutScript(ctx, c, sid, c.indexed != sid, c.args(mode, otherExpired, c.req.HoldIDs))
	defer it.release()
	r := &it.r
	if r.batched { // a batch item's (always, but for a call that stopped waiting)
		res.Changes = r.changes
	} else {
		res.Changes = changesOf(r)
	}
	res.CartCleared = r.Swept
	if err != nil {
		return err
	}
	if r.hasOrder {
		res.Order = r.order
	} else {
		res.Order = r.orderOf()
	}
	res.Created = r.Created
	if r.Empty {
		c.emptied = sid
	}
	return nil
}

// maxCheckoutBatch bounds the checkouts of one script call.
const maxCheckoutBatch = 200

// checkoutItem is one run of the checkout script waiting for its stream's batch.
type checkoutItem struct {
	userID string
	index  bool          // list the stream in the user's order index first
	args   checkoutArgs  // the script's arguments for this checkout
	done   chan struct{} // one value sent when r and err are set (buffered, 1)
	r      scriptReply   // set before done is sent, with err
	err    error
	pooled bool // from checkoutItems, and answered: release puts it back
	// The order index's SADD (if index) and what it points to (see evalArgs).
	sadd   [3]any
	orders string
	run    int // -k if it starts a run of k short items in its batch's arguments
}

// checkoutScript runs the checkout script for c on one stream (index: list the stream
// in the user's order index first). Concurrent calls on one stream share a script
// call (lua/checkout.lua takes a batch; each checkout is still checked and recorded
// on its own, atomically) and its round trip.
//
// It answers the item, its reply in it.r (not a copy: the checkout path's frames are
// what a connection's goroutine needs of stack, which the collector shrinks between
// requests and a checkout grew again); the caller calls release once done with it.
func (s *RedisStore) checkoutScript(ctx context.Context, c *checkoutCall, sid string, index bool, args checkoutArgs) (*checkoutItem, error) {
	it := checkoutItems.Get().(*checkoutItem)
	it.userID, it.index, it.args = c.req.UserID, index, args
	s.checkouts.add(sid, it)
	select {
	case <-it.done:
		it.pooled = true
		return it, it.err
	case <-ctx.Done():
		// Not put back (its batch may still answer into it, and read c's arguments):
		// an empty reply.
		c.left = true
		return &checkoutItem{}, unavailable(ctx.Err())
	}
}

// checkoutItems are checkoutScript's items, each with its done channel (buffered: the
// batch sends one value, the call receives it, and the channel is empty again for the
// next). An item goes back (release) once its answer was received and read: its batch
// touches it no more after the send. One heap object of ~640 bytes and a channel less
// per checkout.
var checkoutItems = sync.Pool{New: func() any { return &checkoutItem{done: make(chan struct{}, 1)} }}

// release puts an answered item of checkoutScript back into checkoutItems; the
// caller must not use it, nor its reply, after.
func (it *checkoutItem) release() {
	if it.pooled {
		*it = checkoutItem{done: it.done}
		checkoutItems.Put(it)
	}
}

// checkoutBatch runs one checkout script call for the items and answers each, in one
// round trip: the users' order indexes learn of the stream before the script (unless
// their claim did), so a crash in between leaves a stale entry, never a lost order.
func (s *RedisStore) checkoutBatch(sid string, items []*checkoutItem) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := 1
	for _, it := range items {
		n += 1 + it.args.n
	}
	base, seq := s.base(sid), s.seqBase()
	// The seq base, then each checkout's count and arguments, or "-k" and the short
	// form's arguments of a run of k usual checkouts (see lua/checkout.lua).
	args := append(s.evalArgs("checkout", &base, n), &seq)
	var run *checkoutItem // the first of the current run of short items
	for _, it := range items {
		switch {
		case it.args.n != 4:
			run = nil
			args = append(args, it.args.n)
		case run == nil:
			run, it.run = it, 0
			args = append(args, &it.run)
		}
		if run != nil {
			run.run--
		}
		args = it.args.appendTo(args)
	}
	pipe := s.rdb.Pipeline()
	for _, it := range items {
		if it.index {
			if it.orders = it.args.c.orders; it.orders == "" {
				it.orders = s.userKey(it.userID, "orders")
			}
			it.sadd = [...]any{"sadd", &it.orders, &sid}
			pipe.Do(ctx, it.sadd[:]...)
		}
	}
	cmd := pipe.Do(ctx, args...)
	_, err := pipe.Exec(ctx)
	var r flatReply
	switch {
	case isNoScript(cmd.Err()):
		r, err = s.runFlat(ctx, "checkout", sid, checkoutWidth, args[4:]...)
	case err != nil:
		err = scriptError("checkout", err)
	default:
		r, err = decodeFlat("checkout", cmd.Val(), checkoutWidth)
	}
	var prev []string // the previous item's slots (flags "=" stand for some of them)
	for i, it := range items {
		if res := r.item(i); res != nil {
			if res[2] == "=" && prev != nil {
				res[2] = prev[2]
				copy(res[5:], prev[5:])
			}
			prev = res
		}
		it.r, it.err = checkoutResult(r, i, err, sid, it.args.c)
		it.done <- struct{}{} // the last use of it here (see checkoutItems)
	}
	// The holds that left the carts keep their sweep entries (one per hold batch, see
	// holdBatchDueKey): the sweep finds them gone and skips them, as it does a hold
	// made before 2026-12-06 whose entry (in holddue:u) is its own.
}

// checkoutResult is the reply of the i-th checkout of a batch, shaped as the reply of
// a script call of its own: its business error, and only the products and sales it
// touched (as they are after the batch).
func checkoutResult(r flatReply, i int, err error, sid string, c *checkoutCall) (scriptReply, error) {
	if err != nil {
		return scriptReply{}, err
	}
	res := r.item(i)
	if res == nil {
		return scriptReply{}, fmt.Errorf("redis script checkout: %d results, want more than %d", len(r.slots)/checkoutWidth, i)
	}
	flags := res[2]
	// (res[3], the dropped hold ids, is read by no caller: a run of short items leaves them out)
	out := scriptReply{Err: res[0], Msg: res[1], Cleared: res[4],
		Created: strings.IndexByte(flags, 'c') >= 0, Swept: strings.IndexByte(flags, 's') >= 0,
		Empty: strings.IndexByte(flags, 'e') >= 0}
	switch {
	case strings.IndexByte(flags, 'r') >= 0: // an earlier order, packed
		m, err := unpackHash(res[7])
		if err != nil {
			return scriptReply{}, err
		}
		// (the record's newer form leaves out its stream and user: the key's)
		m["stream_id"], m["user_id"] = sid, c.req.UserID
		out.Order = m
	case out.Created: // a new order: the script said what the request does not
		out.hasOrder = true
		out.order = Order{
			ID: c.req.OrderID, UserID: c.req.UserID, StreamID: sid, Items: orderItems([]OrderItem{}, res[7]),
			TotalCents: atoi64(res[8]), Currency: res[9], Status: "placed", CreatedAt: c.nowUTC.Round(0),
			ExpiredHoldIDs: append([]string{}, splitList(res[10], ",")...),
		}
	}
	// The products and sales it touched, decoded once per batch (see flatReply): one
	// alone is the batch's record, shared (read only); more are copied, then sorted.
	ch := Changes{Products: changed(r.product, res[5]), Sales: changed(r.sale, res[6])}
	sortChanges(&ch)
	out.batched, out.changes = true, ch
	if out.Err == "" {
		return out, nil
	}
	return out, batchItemError("checkout", out.Err, out.Msg)
}

// changed is the records of a reply slot's comma-separated ids (a zero record for an
// id the reply has none of): one id's is the batch's own slice (see flatReply), several
// are copied into a slice of their own.
func changed[T any](recs map[string][]T, ids string) []T {
	if ids == "" {
		return nil
	}
	if strings.IndexByte(ids, ',') < 0 {
		if one, ok := recs[ids]; ok {
			return one
		}
	}
	var out []T
	for ids != "" {
		var id string
		id, ids, _ = strings.Cut(ids, ",")
		if one, ok := recs[id]; ok {
			out = append(out, one[0])
		} else {
			var zero T
			out = append(out, zero)
		}
	}
	return out
}

// checkoutWidth is the number of strings per checkout in the checkout script's reply.
const checkoutWidth = 11

// batchItemError is the error of one item of a batch script's reply: its business
// error's sentinel, else a plain error (an internal error for that caller only), as
// for an item that failed at runtime (item_failed, see run_item in lua/lib.lua).
func batchItemError(script, code, msg string) error {
	if sentinel, ok := businessErrors[code]; ok {
		return fmt.Errorf("%s: %w", msg, sentinel)
	}
	if code == "item_failed" {
		return fmt.Errorf("redis script %s: this item failed: %s", script, msg)
	}
	return fmt.Errorf("redis script %s: unknown error %q: %s", script, code, msg)
}

// ListOrders returns the user's orders, oldest first.
func (s *RedisStore) ListOrders(ctx context.Context, userID string) ([]Order, error) {
	sids, err := s.rdb.SMembers(ctx, s.userBase(userID)+"orders").Result()
	if err != nil {
		return nil, unavailable(err)
	}
	sort.Strings(sids)
	var all []map[string]string
	for _, sid := range sids {
		ms, err := s.list(ctx, sid, "uo:"+userID, "o")
		if err != nil {
			return nil, err
		}
		all = append(all, ms...)
	}
	sortByCreation(all)
	out := make([]Order, len(all))
	for i, m := range all {
		out[i] = orderFromHash(m)
	}
	return out, nil
}

// ListStreamOrders returns the stream's orders, oldest first.
func (s *RedisStore) ListStreamOrders(ctx context.Context, streamID string) ([]Order, error) {
	ms, err := s.list(ctx, streamID, "orders", "o")
	if err != nil {
		return nil, err
	}
	out := make([]Order, 0, len(ms))
	for _, m := range ms {
		out = append(out, orderFromHash(m))
	}
	return out, nil
}
