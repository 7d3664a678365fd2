-- hold: ARGV = 9 values per hold: hold id, user id, product id, sale id, quantity,
-- expires_at (RFC 3339), expires_us, now_us, seq (the node's clock, orders holds made
-- at one now). Exactly one of product id and sale id is set. Each hold, in turn,
-- takes its units out of the product's stock or the sale's remaining and is recorded,
-- or is refused as a whole (every check comes before any write): concurrent holds of
-- one stream share one call. Answers results[i] = {hold = ...} or {e = code, m = ...}.
-- hmget reads only the fields a hold needs (cheaper than whole hashes).
local function hmget(k, ...)
  local names = {...}
  local vals = redis.call('HMGET', k, unpack(names))
  if not vals[1] then
    return nil
  end
  local t = {}
  for i, f in ipairs(names) do
    t[f] = vals[i]
  end
  return t
end

local function hold_one(hid, uid, pid, said, qty, expires_at, exp_us, now_us, seq)
  local q, now = num(qty), num(now_us)
  if redis.call('EXISTS', key('h', hid)) == 1 then
    local old = hgetall(key('h', hid))
    if old.user_id == uid then
      return {hold = old} -- the same call again (a retry): nothing more to do
    end
    return {e = 'conflict', m = 'hold exists'}
  end
  local s
  if said ~= '' then
    s = hmget(key('s', said), 'product_id', 'status', 'starts_us', 'ends_us', 'per_user_limit', 'remaining', 'price_cents')
    if not s then
      return {e = 'not_found', m = 'sale not found'}
    end
    pid = s.product_id
  end
  local pk = key('p', pid)
  local p = hmget(pk, 'stream_id', 'hidden', 'stock', 'price_cents', 'currency')
  if not p or p.hidden == '1' then
    return {e = 'not_found', m = 'product not found'}
  end
  local price = p.price_cents
  if s then
    if not sale_active(s, now) then
      return {e = 'sale_not_active', m = 'the sale is not active'}
    end
    local uk = key('su', said)
    local used = num(redis.call('HGET', uk, uid))
    if used + q > num(s.per_user_limit) then
      return {e = 'limit_exceeded', m = 'at most ' .. s.per_user_limit .. ' units of this sale per buyer'}
    end
    if num(s.remaining) < q then
      return {e = 'sold_out', m = 'sold out'}
    end
    local sk = key('s', said)
    redis.call('HINCRBY', sk, 'remaining', -q)
    redis.call('HINCRBY', sk, 'held', q)
    redis.call('HINCRBY', uk, uid, q)
    touch_sale(said)
    price = s.price_cents
  else
    if num(p.stock) < q then
      return {e = 'sold_out', m = 'sold out'}
    end
    redis.call('HINCRBY', pk, 'stock', -q)
    redis.call('HINCRBY', pk, 'held', q)
    touch_product(pid)
  end
  local h = {
    id = hid, user_id = uid, stream_id = p.stream_id, product_id = pid, sale_id = said,
    quantity = qty, unit_price_cents = price, currency = p.currency,
    expires_at = expires_at, exp_us = exp_us, created_us = now_us, seq = seq, state = 'live',
  }
  hset(key('h', hid), h)
  redis.call('ZADD', key('exp'), exp_us, hid)
  redis.call('RPUSH', key('uh', uid), hid)
  return {hold = h}
end

local results = {}
for i = 1, #ARGV, 9 do
  results[#results + 1] = hold_one(unpack(ARGV, i, i + 8))
end
return reply({results = results})
