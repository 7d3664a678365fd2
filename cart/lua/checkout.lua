-- checkout: ARGV = user id, idempotency key hash, fingerprint, order id, now_us,
-- now (RFC 3339), mode, expired hold ids cleared elsewhere (joined by ","), seq (the
-- node's clock, orders orders placed at one now), hold id...
-- mode "ids" orders exactly the listed holds, "all" the user's whole cart in this
-- stream, "clear" only clears (the listed holds, or the whole cart when none are
-- listed). Every attempt that gets past the key and the holds' existence clears
-- every expired hold of the user here (answering swept). The key's record here
-- (order id|at_us|fingerprint, 24 h) makes a retry after a lost answer return the
-- same order.
local uid, ih, fp, oid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, mode = num(ARGV[5]), ARGV[7]
local day = 86400000000
local ik = key('idem', ih)
if mode ~= 'clear' then
  local rec = redis.call('GET', ik)
  if rec then
    local roid, at, rfp = string.match(rec, '^([^|]*)|([^|]*)|(.*)$')
    if now - num(at) < day then
      if rfp ~= fp then
        return fail('conflict', 'the idempotency key was used with another request')
      end
      return reply({order = hgetall(key('o', roid)), created = false})
    end
  end
end

local holds, missing, seen = {}, false, {}
local function add(id)
  if seen[id] then
    return
  end
  seen[id] = true
  local h = hgetall(key('h', id))
  if not h or h.user_id ~= uid then
    missing = true
  else
    holds[#holds + 1] = h
  end
end
if mode == 'ids' or (mode == 'clear' and #ARGV >= 10) then
  for i = 10, #ARGV do
    add(ARGV[i])
  end
else
  for _, id in ipairs(redis.call('LRANGE', key('uh', uid), 0, -1)) do
    add(id)
  end
end
if missing and mode == 'ids' then
  return fail('not_found', 'hold not found')
end

local live, expired_ids = {}, {}
for _, h in ipairs(holds) do
  if h.state ~= 'live' or num(h.exp_us) <= now then
    release_hold(h)
    drop_hold(h)
    expired_ids[#expired_ids + 1] = h.id
  else
    live[#live + 1] = h
  end
end
-- The user's other expired holds in this stream (outside the listed ones) leave the
-- cart too, unlisted: API.md lists an expired hold only until the next checkout. Then
-- the whole of the user's cart here is clear of expired holds (swept).
local dropped = {unpack(expired_ids)}
if mode == 'ids' or #ARGV >= 10 then
  for _, id in ipairs(redis.call('LRANGE', key('uh', uid), 0, -1)) do
    if not seen[id] then
      local h = hgetall(key('h', id))
      if h and (h.state ~= 'live' or num(h.exp_us) <= now) then
        release_hold(h)
        drop_hold(h)
        dropped[#dropped + 1] = id
      end
    end
  end
end
local swept = table.concat(dropped, ',')
if mode == 'clear' then
  return reply({cleared = table.concat(expired_ids, ','), dropped = swept, swept = true})
end
if #live == 0 or (mode == 'ids' and #expired_ids > 0) then
  if #expired_ids > 0 then
    return reply({e = 'hold_expired', m = 'hold expired: ' .. table.concat(expired_ids, ', '), dropped = swept, swept = true})
  end
  return reply({e = 'conflict', m = 'the cart is empty', dropped = swept, swept = true})
end

local total, items, currency = 0, {}, ''
for _, h in ipairs(live) do
  local q = num(h.quantity)
  if h.sale_id ~= '' then
    local sk = key('s', h.sale_id)
    redis.call('HINCRBY', sk, 'held', -q)
    redis.call('HINCRBY', sk, 'sold', q)
    touch_sale(h.sale_id)
  else
    local pk = key('p', h.product_id)
    redis.call('HINCRBY', pk, 'held', -q)
    redis.call('HINCRBY', pk, 'sold', q)
    touch_product(h.product_id)
  end
  total = total + q * num(h.unit_price_cents)
  currency = h.currency
  items[#items + 1] = table.concat({h.product_id, h.sale_id, h.quantity, h.unit_price_cents}, ',')
  drop_hold(h)
  dropped[#dropped + 1] = h.id
end
local expired = table.concat(expired_ids, ',')
if ARGV[8] ~= '' then
  expired = ARGV[8] .. (expired ~= '' and ',' or '') .. expired
end
local o = {
  id = oid, user_id = uid, stream_id = live[1].stream_id, items = table.concat(items, ';'),
  total_cents = string.format('%.0f', total), currency = currency, status = 'placed',
  created_at = ARGV[6], created_us = ARGV[5], seq = ARGV[9], expired = expired,
}
hset(key('o', oid), o)
redis.call('RPUSH', key('orders'), oid)
redis.call('RPUSH', key('uo', uid), oid)
redis.call('SET', ik, oid .. '|' .. ARGV[5] .. '|' .. fp, 'PX', 86400000)
return reply({order = o, created = true, dropped = table.concat(dropped, ','), swept = true,
  empty = redis.call('LLEN', key('uh', uid)) == 0})
