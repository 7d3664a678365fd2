-- hold: ARGV = the batch's seq base (see seq_suffixes in lib.lua), then groups of holds of
-- one target: the group's count k, product id, sale id, quantity, then 4 values per
-- hold: hold id, user id, expires_us, now_us (since 2026-12-06; before, 8 values per
-- hold with its own target, quantity and seq: a storm's holds of one sale say those
-- once per batch). A hold's seq (the node's clock, orders holds made at one now) is
-- the base and its place in the batch. Exactly one of product id and sale id is set. Each hold, in turn,
-- takes its units out of the product's stock or the sale's remaining and is recorded,
-- or is refused as a whole (nothing of it stays): concurrent holds of
-- one stream share one call. Answers flat_reply (lib.lua) with 4 strings per hold:
-- "n", product id, unit_price_cents, currency for a new hold (only what the caller
-- does not know), or, for k new holds in a row whose three are the last new hold's
-- of the batch, the one string "=<k>" (a storm's holds of one sale all answer the
-- same: the reply carries them once; see decodeFlat in redis.go); "r", the packed record (pack in
-- lib.lua), "", "" for a retry
-- of an existing one; "e", error code, message, "" for a refused or failed one.
-- A hold id already recorded answers "r" (the same user) or conflict, whatever the
-- stock says: a refusal looks for the record first, and a hold that passed every
-- check is written by HSETNX, which finds it (the counting undone) without an
-- EXISTS per hold. (Hold ids are new UUIDs; nothing retries a hold today. A hold
-- of the newer form is looked for in its user's cart only: see recorded.)
-- The batch reads each sale and product once and keeps their counters here; they are
-- written once, after the last hold (the script is atomic, so no one sees between),
-- also when a hold fails at runtime (item_error in lib.lua).
-- (The holds' expiries are only in the global holddue:b set, one entry per batch
-- written beside the script: see holdBatch in redis_cart.go. The stream's own set,
-- P{sid}:exp, is no longer written since 2026-12-04; release.lua still reads what
-- older holds left.)
local sales, products = {}, {}

local function hmget(k, ...)
  local names = {...}
  local vals = redis.call('HMGET', k, unpack(names))
  if not vals[1] then
    return false
  end
  local t = {}
  for i, f in ipairs(names) do
    t[f] = vals[i]
  end
  return t
end

local function sale_of(said)
  if sales[said] == nil then
    local s = hmget(key('s', said), 'product_id', 'status', 'starts_us', 'ends_us', 'per_user_limit', 'remaining', 'held', 'price_cents')
    if s then
      -- numbers once per batch, not per hold (tonumber of a time in µs is a strtod)
      s.remaining, s.held = num(s.remaining), num(s.held)
      s.starts_us, s.ends_us, s.limit = num(s.starts_us), num(s.ends_us), num(s.per_user_limit)
      s.uk = key('su', said)
    end
    sales[said] = s
  end
  return sales[said]
end

local function product_of(pid)
  if products[pid] == nil then
    local p = hmget(key('p', pid), 'stream_id', 'hidden', 'stock', 'held', 'price_cents', 'currency')
    if p then
      p.stock, p.held = num(p.stock), num(p.held)
    end
    products[pid] = p
  end
  return products[pid]
end

-- recorded answers for a hold id that is already recorded: the stored hold to its
-- user (a retry), conflict to anyone else; nothing if there is none. (A hold of the
-- newer form is found in its user's cart only: another user's hold id is not looked
-- for. Hold ids are new UUIDs.)
local function recorded(hid, uid)
  local old = cart_hold(key('uh', uid), hid, uid)
  if old == false then -- the cart's older form
    old = hold_of(hid)
  end
  if not old then
    return nil
  end
  if old.user_id == uid then
    old.cart, old.d = nil, nil -- (not record fields)
    return 'r', pack(old), '', '' -- the same call again (a retry): nothing more to do
  end
  return 'e', 'conflict', 'hold exists', ''
end

-- refuse answers a refused hold: its record if the id is recorded, else the error.
local function refuse(hid, uid, code, msg)
  local a, b, c, d = recorded(hid, uid)
  if a then
    return a, b, c, d
  end
  return 'e', code, msg, ''
end

local function over_limit(s, hid, uid)
  return refuse(hid, uid, 'limit_exceeded', 'at most ' .. s.per_user_limit .. ' units of this sale per buyer')
end

-- uncount takes a refused hold's q units back out of the user's count of the sale
-- (uk), which HINCRBY made used: the field goes when they were all of it.
local function uncount(uk, uid, used, q)
  if used == q then
    redis.call('HDEL', uk, uid)
  else
    redis.call('HINCRBY', uk, uid, -q)
  end
end

local last_us, last_now -- the holds of a batch mostly share one now

local function hold_one(hid, uid, pid, said, qty, exp_us, now_us, seq)
  if now_us ~= last_us then
    last_us, last_now = now_us, num(now_us)
  end
  local q, now = qty + 0, last_now -- (one strtod; tonumber converts twice)
  local s
  if said ~= '' then
    s = sale_of(said)
    if not s then
      return refuse(hid, uid, 'not_found', 'sale ' .. said)
    end
    pid = s.product_id
  end
  local p = product_of(pid)
  if not p or p.hidden == '1' then
    return refuse(hid, uid, 'not_found', 'product ' .. pid)
  end
  local price = p.price_cents
  local uk, used
  if s then
    -- A sale takes holds while it is not ended and now is inside StartsAt..EndsAt
    -- (its times are the numbers sale_of made: no tonumber of each per hold).
    if s.status == 'ended' or now < s.starts_us or now >= s.ends_us then
      return refuse(hid, uid, 'sale_not_active', 'sale ' .. said .. ' is not active')
    end
    -- The user's units of the sale: read only when sold out (to tell limit_exceeded
    -- from sold_out); else counted up at once and counted back if over the limit
    -- (one command instead of two on the usual path; the script is atomic).
    local limit = s.limit
    uk = s.uk
    if s.remaining < q then
      if num(redis.call('HGET', uk, uid)) + q > limit then
        return over_limit(s, hid, uid)
      end
      return refuse(hid, uid, 'sold_out', 'sold out')
    end
    used = redis.call('HINCRBY', uk, uid, qty)
    if used > limit then
      uncount(uk, uid, used, q)
      return over_limit(s, hid, uid)
    end
    price = s.price_cents
  elseif p.stock < q then
    return refuse(hid, uid, 'sold_out', 'sold out')
  end
  local currency = p.currency
  -- One field of the user's cart (see in_cart in lib.lua); written only if the id is
  -- new. A cart of the older form (a list: WRONGTYPE) gets the hold as its own key
  -- and its id. If the id is taken (or a key is not a hash: a runtime error), the
  -- user's count goes back as it came, so nothing of this hold stays.
  local ck = key('uh', uid)
  local set, listed = redis.pcall('HSETNX', ck, hid, hold_record(pid, said, qty, price, currency, exp_us, now_us, seq)), false
  if set ~= 1 and type(set) == 'table' and string.find(set.err, 'WRONGTYPE', 1, true) then
    local rec = older_hold_record(pid, said, qty, price, currency, exp_us, now_us, seq, uid)
    set, listed = redis.pcall('HSETNX', key('h', hid), 'd', rec), true
  end
  if set ~= 1 then
    if s then
      uncount(uk, uid, used, q)
    end
    if set == 0 then
      return recorded(hid, uid)
    end
    error(set)
  end
  -- The counters move once the hold is recorded, not before: a runtime error in this
  -- hold (see item_error) leaves them in step with the holds that exist.
  if s then
    s.remaining, s.held = s.remaining - q, s.held + q
    touch_sale(said)
  else
    p.stock, p.held = p.stock - q, p.held + q
    touch_product(pid)
  end
  if listed then
    redis.call('RPUSH', ck, hid)
  end
  return 'n', pid, price, currency
end

local A, pcall_r = ARGV, redis.pcall
local base, sfx = A[1], seq_suffixes() -- the batch's seq base, the items' places
local out = {'', ''} -- flat_reply's two lists of records, then 4 strings per hold (or "=<k>")
local lb, lc, ld -- the last new hold's answer
-- k new holds in a row answering the last new hold's answer come as one string "=<k>"
-- (since 2026-12-06: before, each was "="); reps counts the current run.
local reps = 0
local i, j, nargs = 2, 0, #ARGV
while i <= nargs do
  local k, tp, said, qty = A[i] + 0, A[i + 1], A[i + 2], A[i + 3]
  i = i + 4
  -- The usual hold (a sale's, active, its product not hidden, units left, the user
  -- under the limit, a new hold id, the cart of the newer form) runs inline below,
  -- what hold_one does for it without its function calls: the group's sale, product,
  -- quantity and the record's first part once. Anything else goes to hold_one (before
  -- any write, or with this hold's count undone).
  local s = said ~= '' and sales[said]
  if s == nil then
    s = sale_of(said)
  end
  local q, p = s and tonumber(qty)
  if q then
    p = products[s.product_id]
    if p == nil then
      p = product_of(s.product_id)
    end
    if not p or p.hidden == '1' or s.status == 'ended' then
      q = nil
    end
  end
  local pid, price, currency, uk, limit, starts, ends, pre
  if q then
    pid, price, currency, uk, limit, starts, ends = s.product_id, s.price_cents, p.currency, s.uk, s.limit, s.starts_us, s.ends_us
    pre = pid .. ',' .. said .. ',' .. qty .. ',' .. price .. '|' .. currency .. '|'
  end
  for _ = 1, k do
    j = j + 1
    local hid, uid, exp_us, now_us = A[i], A[i + 1], A[i + 2], A[i + 3]
    local sj = sfx[j] or seq_suffix(j)
    i = i + 4
    local ok, a, b, c, d, used
    if q and now_us then
      if now_us ~= last_us then
        last_us, last_now = now_us, num(now_us)
      end
      if last_now >= starts and last_now < ends and s.remaining >= q then
        used = pcall_r('HINCRBY', uk, uid, qty)
        if type(used) ~= 'number' then
          used = nil -- (an error: nothing counted) hold_one below
        elseif used > limit then
          uncount(uk, uid, used, q)
          ok, a, b, c, d = pcall(over_limit, s, hid, uid)
        else
          local set = pcall_r('HSETNX', B .. 'uh:' .. uid, hid, pre .. exp_us .. '|' .. now_us .. '|' .. base .. sj)
          if set == 1 then
            s.remaining, s.held = s.remaining - q, s.held + q
            touched.sales[said] = true
            ok, a, b, c, d = true, 'n', pid, price, currency
          else
            -- taken (its record answers), or the older cart or an error (hold_one
            -- below, as for any hold): the count undone first
            uncount(uk, uid, used, q)
            if set == 0 then
              ok, a, b, c, d = pcall(recorded, hid, uid)
            end
          end
        end
      end
    end
    if ok == nil then
      ok, a, b, c, d = pcall(hold_one, hid, uid, tp, said, qty, exp_us, now_us, base .. sj)
    end
    local same = false
    if not ok then
      a, b, c, d = 'e', 'item_failed', item_error(a), ''
    elseif a == 'n' then
      if b == lb and c == lc and d == ld then
        same = true
      else
        lb, lc, ld = b, c, d
      end
    end
    if same then
      reps = reps + 1
    else
      reps = end_run(out, reps)
      local n = #out
      out[n + 1], out[n + 2], out[n + 3], out[n + 4] = a, b, c, d
    end
  end
end
end_run(out, reps)
for id in pairs(touched.sales) do
  local s = sales[id]
  redis.call('HSET', key('s', id), 'remaining', string.format('%d', s.remaining), 'held', string.format('%d', s.held))
end
for id in pairs(touched.products) do
  local p = products[id]
  redis.call('HSET', key('p', id), 'stock', string.format('%d', p.stock), 'held', string.format('%d', p.held))
end
return flat_reply(out)
