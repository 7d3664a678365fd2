package cart

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// The batch reads of the Redis store (the unit gauges of /metrics read up to a few
// hundred products and sales at a scrape): one round trip for the streams of the ids
// not in the cache, one for the records.

// maxUnitsIDs bounds the product ids of one units script call (Lua's unpack).
const maxUnitsIDs = 256

// streamsOf finds the streams of product ("pidx") or sale ("sidx") ids, as
// streamOfID does, with one pipeline for the ids not cached; an id that names
// nothing is left out of the answer.
func (s *RedisStore) streamsOf(ctx context.Context, index string, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	var missing []string
	s.mu.RLock()
	for _, id := range ids {
		if sid, ok := s.streamOf[id]; ok {
			out[id] = sid
		} else {
			missing = append(missing, id)
		}
	}
	s.mu.RUnlock()
	if len(missing) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(missing))
	for i, id := range missing {
		cmds[i] = pipe.Get(ctx, s.prefix+index+":"+id)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(err)
	}
	for i, id := range missing {
		sid, err := cmds[i].Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, unavailable(err)
		}
		out[id] = sid
		s.remember(id, sid)
	}
	return out, nil
}

// GetSales reads the sales' hashes in one pipeline.
func (s *RedisStore) GetSales(ctx context.Context, ids []string) ([]Sale, error) {
	streams, err := s.streamsOf(ctx, "sidx", ids)
	if err != nil || len(streams) == 0 {
		return []Sale{}, err
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		if sid, ok := streams[id]; ok {
			cmds[i] = pipe.HGetAll(ctx, s.base(sid)+"s:"+id)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, unavailable(err)
	}
	out := make([]Sale, 0, len(streams))
	for _, c := range cmds {
		if c != nil && len(c.Val()) > 0 {
			out = append(out, saleFromHash(c.Val()))
		}
	}
	return out, nil
}

// GetProductUnits runs lua/units.lua once per stream (and per maxUnitsIDs of its
// products), every call in one pipeline.
func (s *RedisStore) GetProductUnits(ctx context.Context, ids []string) ([]ProductUnits, error) {
	streams, err := s.streamsOf(ctx, "pidx", ids)
	if err != nil || len(streams) == 0 {
		return []ProductUnits{}, err
	}
	type call struct {
		streamID string
		args     []any
	}
	var calls []call
	open := map[string]int{} // stream → its call taking more ids
	for _, id := range ids {
		sid, ok := streams[id]
		if !ok {
			continue
		}
		i, ok := open[sid]
		if !ok || len(calls[i].args) == maxUnitsIDs {
			i = len(calls)
			open[sid] = i
			calls = append(calls, call{streamID: sid})
		}
		calls[i].args = append(calls[i].args, id)
	}
	sc := s.scripts["units"]
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for i, c := range calls {
		cmds[i] = sc.EvalSha(ctx, pipe, []string{s.base(c.streamID)}, c.args...)
	}
	pipe.Exec(ctx) // each Cmd carries its own answer or error
	found := make(map[string]ProductUnits, len(streams))
	for i, c := range calls {
		v, err := cmds[i].Result()
		if isNoScript(err) { // Redis restarted since the scripts were loaded
			v, err = sc.Run(ctx, s.rdb, []string{s.base(c.streamID)}, c.args...).Result()
		}
		if err != nil {
			return nil, scriptError("units", err)
		}
		if err := decodeUnits(v, c.args, found); err != nil {
			return nil, err
		}
	}
	out := make([]ProductUnits, 0, len(found))
	for _, id := range ids {
		if u, ok := found[id]; ok {
			out = append(out, u)
		}
	}
	return out, nil
}

// decodeUnits reads a units script's answer for the product ids asked into found
// (a product with no hash is left out).
func decodeUnits(v any, ids []any, found map[string]ProductUnits) error {
	items, ok := v.([]any)
	if !ok || len(items) != len(ids) {
		return fmt.Errorf("redis script units: bad reply %T for %d products", v, len(ids))
	}
	for i, item := range items {
		a, ok := item.([]any)
		if !ok || len(a) != 3 {
			return fmt.Errorf("redis script units: bad item %d: %T", i, item)
		}
		m := rows([]any{a[0]})
		if len(m) == 0 || len(m[0]) == 0 {
			continue
		}
		putIn, _ := a[1].(string)
		inSales, _ := a[2].(string)
		u := ProductUnits{Product: productFromHash(m[0]), InSales: atoi(inSales)}
		if n, err := strconv.Atoi(putIn); err == nil { // "" (not kept) stays unknown
			u.PutIn, u.PutInKnown = n, true
		}
		found[ids[i].(string)] = u
	}
	return nil
}
