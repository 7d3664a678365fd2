-- checkout: a batch of checkouts of one stream, each checked and recorded in turn
-- exactly as if it ran alone (concurrent checkouts of one stream share one call, as
-- holds do). ARGV = the batch's seq base (see seq_suffixes in lib.lua: a checkout's
-- seq, the node's clock, orders orders placed at one now, is the base and its place in
-- the batch), then for each checkout: the count of its arguments, then its arguments:
-- user id, the idempotency key's field "k:" .. its hash (see key_record), fingerprint,
-- order id, now_us, mode,
-- expired hold ids cleared elsewhere (joined by ","), hold id...; or, for a run of k
-- usual checkouts in the short form, "-k" and 4 arguments each: user id, key field,
-- order id, now_us, with fingerprint "", mode "all" and no expired hold ids (since
-- 2026-12-06: before, each checkout had its count and its own seq; the short form
-- was count 5 with the seq last).
-- mode "ids" orders exactly the listed holds, "all" the user's whole cart in this
-- stream, "clear" only clears (the listed holds, or the whole cart when none are
-- listed). Every attempt that gets past the key and the holds' existence clears
-- every expired hold of the user here (answering swept). The key's record here
-- (order id|at_us|fingerprint) makes a retry after a lost answer return the same
-- order (for 24 h: an older record is a key used again).
-- The user's orders here (since 2026-12-04): the hash uo:<uid>, order id → the
-- order's record d, and "k:" .. key hash → the key's record; one HSET writes both
-- with the order. Before, uo:<uid> was a list of order ids, each order the hash
-- o:<oid> (field d) and each key record the string idem:<hash> (24 h TTL); a user
-- whose orders here have that form (uo:<uid> a list: the HGET that reads the key's
-- record answers WRONGTYPE) gets it still. The stream's order list names a new
-- order as "<oid> <uid>" (an older one as its id).
-- Answers flat_reply (lib.lua) with 11 strings per checkout: error code ("" if
-- none), message, flags (c: a new order, s: the user's cart here was swept of expired
-- holds, e: the order emptied it, r: the order is an earlier one, packed), the dropped
-- hold ids (the usual path's: "", no caller reads them), the cleared ones, the ids of
-- the products and of the sales it touched
-- (their values, after the whole batch, are the reply's records), then the order: a
-- new one's items, total_cents, currency and expired hold ids (the caller knows the
-- rest), or an earlier one's packed record (pack in lib.lua), "", "", "". (Flags "="
-- say slots 3 and 6 to 11 are the previous item's: see the batch loop below; k such
-- items in a row with no error, message or cleared ids come as one string "=<k>"
-- (their dropped ids left out): see decodeFlat in redis.go.)
-- The sold counters and the stream's order list are written once, after the batch,
-- also when a checkout fails at runtime (item_error in lib.lua).
local day = 86400000000
-- The usual body's fingerprint (the empty body's SHA-256), as key records kept it in
-- full before 2026-12-06; since, it comes and is kept as "" (see storedFingerprint in
-- redis_cart.go).
local empty_fp = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
local sid = string.match(B, '{(.*)}:$') -- the stream's id (its keys' hash tag)
local deltas = {}  -- sale or product key → units moved from held to sold
local ordered = {} -- the batch's new order ids, in order
local unindexed = {} -- ordered hold ids, to leave the stream's older expiry set (if any)

-- call_many runs cmd on the values vs after the arguments first (a key, or none), a
-- thousand at a time (Lua's stack is bounded).
local function call_many(cmd, first, vs)
  for i = 1, #vs, 1000 do
    if first then
      redis.call(cmd, first, unpack(vs, i, math.min(i + 999, #vs)))
    else
      redis.call(cmd, unpack(vs, i, math.min(i + 999, #vs)))
    end
  end
end

-- A hold of a cart of the older form (nil if missing): its two fields (see hold_of in
-- lib.lua), else the older record's.
local function read_hold(id)
  local v = redis.call('HMGET', key('h', id), 'd', 'state')
  if v[1] then
    return unpack_hold(id, v[1], v[2])
  end
  return hold_of(id)
end

-- before: number strings of equal length compare as strings (times in µs, seqs).
local function before(x, y)
  if #x ~= #y then
    return #x < #y
  end
  return x < y
end

-- by_creation orders holds oldest first (the order the older cart list kept).
local function by_creation(a, b)
  if a.created_us ~= b.created_us then
    return before(a.created_us, b.created_us)
  end
  return before(a.seq, b.seq)
end

-- due_at: the hold is expired or due at now (its units go back at checkout).
local function due_at(h, now)
  return h.state == 'expired' or num(h.exp_us) <= now
end

-- failed answers a checkout's error (its 9 slots after the ids of what it touched).
local function failed(code, msg, dropped, swept)
  return code, msg, swept and 's' or '', dropped or '', '', '', '', '', ''
end

-- counter_of names the record whose held/sold counters hold h's units (its sale's, or
-- its product's when bought at the product's price) and marks it touched for the answer.
local function counter_of(h)
  if h.sale_id ~= '' then
    touch_sale(h.sale_id)
    return key('s', h.sale_id)
  end
  touch_product(h.product_id)
  return key('p', h.product_id)
end

-- key_record reads the record of the idempotency key whose field is kf ("k:" .. its
-- hash, made by the caller: no concatenation here) in the user's orders here (ouk,
-- the key uo:<uid>): the record (or nil) and the form of the user's orders (true: the
-- hash; false: the older list, see the top).
local function key_record(ouk, kf)
  local rec = redis.pcall('HGET', ouk, kf)
  if type(rec) ~= 'table' then
    return rec, true
  end
  if not string.find(rec.err, 'WRONGTYPE', 1, true) then
    error(rec)
  end
  return redis.call('GET', key('idem', string.sub(kf, 3))), false
end

-- place_order writes order oid, lists it for its user and remembers the idempotency key
-- (its field kf) with the request's fingerprint fp, in the user's orders here (ouk; hashed:
-- their form, see key_record). The record d (since 2026-12-06): "|" then
-- total_cents|currency|created_us|seq|items|expired, status "placed": what its field
-- (the order id), its key (the stream; the user, uo:<uid>) and created_us (created_at)
-- do not say already; as the field d of the older form's o:<oid>, "|" .. user_id
-- follows (the user id last: it may hold a "|"). Before, d was
-- id|stream_id|total_cents|currency|status|created_at|created_us|seq|items|expired|
-- user_id (an order id never starts with "|"); see expandOrder in redis_decode.go.
-- (Orders written before 2026-12-02 have a field each.)
local function place_order(ouk, hashed, oid, tc, currency, now_us, seq, its, expired, uid, kf, fp)
  local d = '|' .. tc .. '|' .. currency .. '|' .. now_us .. '|' .. seq .. '|' .. its .. '|' .. expired
  if hashed then
    redis.call('HSET', ouk, oid, d, kf, oid .. '|' .. now_us .. '|' .. fp)
    ordered[#ordered + 1] = oid .. ' ' .. uid
    return
  end
  redis.call('HSET', key('o', oid), 'd', d .. '|' .. uid)
  ordered[#ordered + 1] = oid
  redis.call('RPUSH', ouk, oid)
  redis.call('SET', key('idem', string.sub(kf, 3)), oid .. '|' .. now_us .. '|' .. fp, 'PX', '86400000')
end

-- one_fields reads what order_one needs of a hold's field d of the newer form (see
-- hold_record in lib.lua): its order item (product,sale,quantity,price, as the order
-- keeps it), currency and expires_us; nothing for a record of the older form (a
-- product id holds no ","). By plain finds of the separators: a Lua pattern tests
-- every character against its class. The user is the cart's.
local find, sub = string.find, string.sub
local function one_fields(d)
  local a = find(d, '|', 1, true)
  local b = a and find(d, '|', a + 1, true)
  local c = b and find(d, '|', b + 1, true)
  local comma = c and find(d, ',', 1, true)
  if not comma or comma > a then
    return nil
  end
  return sub(d, 1, a - 1), sub(d, a + 1, b - 1), sub(d, b + 1, c - 1)
end

-- older_fields reads the same of a record of the older form (pid|said|qty|price|
-- currency|expires_at|expires_us|...: an older cart's holds are keys of their own),
-- and where expires_us ends (nothing if d has fewer than 8 fields).
local function older_fields(d)
  local a = find(d, '|', 1, true)
  local b = a and find(d, '|', a + 1, true)
  local c = b and find(d, '|', b + 1, true)
  local e = c and find(d, '|', c + 1, true)
  local f = e and find(d, '|', e + 1, true)
  local g = f and find(d, '|', f + 1, true)
  local h = g and find(d, '|', g + 1, true)
  if not h then
    return nil
  end
  return sub(d, 1, e - 1):gsub('|', ','), sub(d, e + 1, f - 1), sub(d, g + 1, h - 1), h
end

-- user_of is the user id of record d of the older form whose expires_us ends at h
-- (see older_fields; nil if d has fewer than 10 fields).
local function user_of(d, h)
  local i = find(d, '|', h + 1, true)
  local j = i and find(d, '|', i + 1, true)
  return j and sub(d, j + 1)
end

-- item_of is what order_one needs of an order item it (see one_fields): its product
-- and sale ids, quantity, total and the key of the counters holding its units (see
-- counter_of); once per batch (a storm's checkouts of one sale share one item). Its
-- quantity and price are converted by arithmetic (one strtod each; tonumber converts
-- twice): the record is hold.lua's, and a malformed one fails the item (see
-- item_error in lib.lua) before anything is written.
local items_of = {}
local function item_of(it)
  local t = items_of[it]
  if t then
    return t
  end
  local pid, said, qty, price = string.match(it, '^([^,]*),([^,]*),([^,]*),([^,]*)$')
  local q = qty + 0
  -- (one unit: its price as the hold recorded it, hold.lua's copy of the sale's or
  -- product's integer; no string.format, ~1k of Redis's instructions)
  t = {pid = pid, said = said, q = q, tc = q == 1 and price or string.format('%d', q * (price + 0)),
    k = said ~= '' and key('s', said) or key('p', pid),
    one_product = said ~= '' and '' or pid, one_sale = said} -- (the item's slots 6 and 7)
  items_of[it] = t
  return t
end

-- order_one orders the cart's one live hold hid, key hk (nil: a field of the cart
-- uk, the newer form), order item it and currency (see one_fields), the usual
-- checkout: what checkout_one does for a cart of one live hold, without its tables
-- (each costs Redis an allocation and a resize per item of a batch; the hold is not
-- unpacked into one either). The cart leaves with the hold.
-- The records the batch touched (flat_reply answers them, see the batch loop). The
-- usual checkout marks its sale or product there itself and says which in one_product
-- and one_sale (the item's slots 6 and 7), not through touched: no table to empty and
-- list per item.
local all_products, all_sales = {}, {}
local one_product, one_sale -- the item's, set by order_one (nil: the item's are in touched)
local function order_one(hid, hk, it, currency, uk, ouk, hashed, kf, uid, fp, oid, now_us, other, seq)
  local t = item_of(it)
  if t.said ~= '' then -- the counters holding its units (see counter_of)
    all_sales[t.said], one_product, one_sale = true, '', t.said
  else
    all_products[t.pid], one_product, one_sale = true, t.pid, ''
  end
  if hk then
    redis.call('DEL', hk, uk)
  else
    redis.call('DEL', uk)
  end
  deltas[t.k] = (deltas[t.k] or 0) + t.q
  unindexed[#unindexed + 1] = hid
  place_order(ouk, hashed, oid, t.tc, currency, now_us, seq, it, other, uid, kf, fp)
  return '', '', 'cse', hid, '', it, t.tc, currency, other
end

-- checkout_one runs the checkout whose n arguments start at ARGV[i] (n 0: the short
-- form's 4), its seq seq. It answers 9 strings: error code, message, flags, dropped,
-- cleared, then the order's 4 (see the top).
local last_us, last_now -- the checkouts of a batch mostly share one now

local function checkout_one(i, n, seq)
  local uid, kf, fp, oid, now_us, mode, other
  if n == 0 then -- the usual checkout's short form (see the top)
    uid, kf, oid, now_us = unpack(ARGV, i, i + 3)
    fp, mode, other = '', 'all', ''
  else
    uid, kf, fp, oid, now_us, mode, other = unpack(ARGV, i, i + 6)
  end
  if now_us ~= last_us then -- (tonumber of a time in µs is two strtod: once per batch)
    last_us, last_now = now_us, num(now_us)
  end
  local now = last_now
  local ouk, hashed = key('uo', uid), true
  if mode ~= 'clear' then
    -- The key's record (the usual new key has none); it is written with the order.
    local rec
    rec, hashed = key_record(ouk, kf)
    if rec then
      local roid, at, rfp = string.match(rec, '^([^|]*)|([^|]*)|(.*)$')
      if now - num(at) < day then
        if rfp ~= fp and not (fp == '' and rfp == empty_fp) then
          return failed('conflict', 'the idempotency key was used with another request')
        end
        local packed
        -- (with its id: the record's newer form leaves it out)
        if hashed then
          local d = redis.call('HGET', ouk, roid)
          packed = d and '1:d' .. lp(d) .. d .. '2:id' .. lp(roid) .. roid or ''
        else
          packed = pack(redis.call('HGETALL', key('o', roid)), true)
          packed = packed and packed .. '2:id' .. lp(roid) .. roid
        end
        return '', '', 'r', '', '', packed, '', '', ''
      end
    end
  end

  -- The cart (see lib.lua): hold id → record, or the older list of hold ids.
  local uk = key('uh', uid)
  local c = redis.pcall('HGETALL', uk)
  local listed = mode == 'ids' or n >= 8
  local cart, incart -- the cart's hold ids; incart: id → hold (nil: the older form)
  if c.err then
    cart = redis.call('LRANGE', uk, '0', '-1')
  elseif #c == 2 and not listed and mode == 'all' and string.byte(c[2]) ~= 45 then
    -- One live hold (not "-": released), not due: ordered here; anything else takes
    -- the general path below.
    local it, currency, exp_us = one_fields(c[2])
    -- Not due: the times in µs compare as strings (see before; a tonumber of one is a
    -- strtod of ~1.7k of Redis's instructions).
    if it and before(now_us, exp_us) then
      return order_one(c[1], nil, it, currency, uk, ouk, hashed, kf, uid, fp, oid, now_us, other, seq)
    end
  end
  if c.err and not listed and mode == 'all' and #cart == 1 then
    -- A live hold of the current form (no state: "expired" once released) of the
    -- user, not due: ordered here; anything else takes the general path below.
    local hk = key('h', cart[1])
    local v = redis.call('HMGET', hk, 'd', 'state')
    if v[1] and not v[2] then
      local it, currency, exp_us, h = older_fields(v[1])
      if it and user_of(v[1], h) == uid and before(now_us, exp_us) then
        return order_one(cart[1], hk, it, currency, uk, ouk, hashed, kf, uid, fp, oid, now_us, other, seq)
      end
    end
  end
  if not c.err then
    local hs = {}
    incart = {}
    for k = 1, #c, 2 do
      local h = in_cart(uk, c[k], c[k + 1], uid)
      incart[c[k]] = h
      hs[#hs + 1] = h
    end
    table.sort(hs, by_creation)
    cart = {}
    for k, h in ipairs(hs) do
      cart[k] = h.id
    end
  end
  local read_hold = read_hold
  if incart then
    read_hold = function(id) return incart[id] end
  end
  local holds, missing, seen = {}, false, {}
  local from, to = cart, #cart
  if listed then
    from, to = {unpack(ARGV, i + 7, i + n - 1)}, n - 7
  end
  for k = 1, to do
    local id = from[k]
    if not seen[id] then
      seen[id] = true
      local h = read_hold(id)
      if not h or h.user_id ~= uid then
        missing = missing or id
      else
        holds[#holds + 1] = h
      end
    end
  end
  if missing and mode == 'ids' then
    return failed('not_found', 'hold ' .. missing)
  end

  local live, expired_ids = {}, {}
  for _, h in ipairs(holds) do
    if due_at(h, now) then
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
  if listed then
    for _, id in ipairs(cart) do
      if not seen[id] then
        local h = read_hold(id)
        if h and due_at(h, now) then
          release_hold(h)
          drop_hold(h)
          dropped[#dropped + 1] = id
        end
      end
    end
  end
  if mode == 'clear' then
    return '', '', 's', table.concat(dropped, ','), table.concat(expired_ids, ','), '', '', '', ''
  end
  if #live == 0 or (mode == 'ids' and #expired_ids > 0) then
    local swept = table.concat(dropped, ',')
    if #expired_ids > 0 then
      return failed('hold_expired', 'holds have expired: ' .. table.concat(expired_ids, ', '), swept, true)
    end
    return failed('conflict', 'the cart is empty', swept, true)
  end

  -- The held→sold deltas join the batch's only once the holds are gone (a runtime
  -- error before, see item_error, leaves the holds and their counters as they were).
  local total, items, currency, gone, moved = 0, {}, '', {}, {}
  for _, h in ipairs(live) do
    local q, k = num(h.quantity), counter_of(h)
    moved[k] = (moved[k] or 0) + q
    total = total + q * num(h.unit_price_cents)
    currency = h.currency
    items[#items + 1] = h.product_id .. ',' .. h.sale_id .. ',' .. h.quantity .. ',' .. h.unit_price_cents
    gone[#gone + 1] = incart and h.id or key('h', h.id)
    dropped[#dropped + 1] = h.id
  end
  -- The cart here is empty when every hold it listed has left it (the usual case): it
  -- goes in the same DEL as the holds instead of an LREM per hold.
  local left = {}
  for _, id in ipairs(dropped) do
    left[id] = true
  end
  local empty = true
  for _, id in ipairs(cart) do
    if not left[id] then
      empty = false
      break
    end
  end
  if incart then -- the holds are the cart's fields
    if empty then
      redis.call('DEL', uk)
    else
      call_many('HDEL', uk, gone)
    end
  else
    if empty then
      gone[#gone + 1] = uk
    end
    call_many('DEL', nil, gone)
  end
  for k, q in pairs(moved) do
    deltas[k] = (deltas[k] or 0) + q
  end
  for _, h in ipairs(live) do
    unindexed[#unindexed + 1] = h.id
  end
  if not empty and not incart then
    for _, h in ipairs(live) do
      redis.call('LREM', uk, '0', h.id)
    end
  end
  local expired = table.concat(expired_ids, ',')
  if other ~= '' then
    expired = other .. (expired ~= '' and ',' or '') .. expired
  end
  local its, tc = table.concat(items, ';'), string.format('%d', total)
  place_order(ouk, hashed, oid, tc, currency, now_us, seq, its, expired, uid, kf, fp)
  return '', '', empty and 'cse' or 'cs', table.concat(dropped, ','), '', its, tc, currency, expired
end

-- usual_one is the usual checkout (the short form, see the top) at ARGV[i] when it
-- is the common case: no key record, the user's cart here of the newer form with one
-- live hold of the newer record form, not due; what order_one does for it, without
-- its function calls and tables. It answers the order item, its total, currency and
-- the touched product and sale ids (one of them ""), or nothing
-- (having written nothing) when anything differs: then checkout_one runs the item.
-- It raises no error of its own (it is called without pcall: an item that would fail
-- goes to checkout_one, which fails it), only Redis refusing work (see item_error).
local A, pcall_r, call_r, byte = ARGV, redis.pcall, redis.call, string.byte
local exp_set -- the stream's older expiry set exists (nil: not asked yet)
local function usual_one(i, base, sj)
  local uid, kf, oid, now_us = A[i], A[i + 1], A[i + 2], A[i + 3]
  if not now_us then
    return nil
  end
  -- (a stream with the older expiry set needs the hold's id: the general path)
  if exp_set == nil then
    exp_set = call_r('EXISTS', B .. 'exp') == 1
  end
  if exp_set then
    return nil
  end
  local ouk = B .. 'uo:' .. uid
  -- A key record (a string) or the older orders (an error): the general path.
  if pcall_r('HGET', ouk, kf) then
    return nil
  end
  local uk = B .. 'uh:' .. uid
  -- The cart's records only: the hold's id (its field) is not needed here (no reply
  -- slot carries it, and no expiry set lists it).
  local c = pcall_r('HVALS', uk)
  local d = c[1] -- (nil for an empty cart or an error)
  if not d or c[2] or byte(d) == 45 then
    return nil
  end
  -- one_fields, inline: item|currency|expires_us|...
  local a = find(d, '|', 1, true)
  local comma = find(d, ',', 1, true)
  if not a or not comma or comma > a then
    return nil
  end
  local b = find(d, '|', a + 1, true)
  local e = b and find(d, '|', b + 1, true)
  if not e then
    return nil
  end
  local exp_us = sub(d, b + 1, e - 1)
  -- not due (see before)
  if #now_us > #exp_us or (#now_us == #exp_us and now_us >= exp_us) then
    return nil
  end
  local it, currency = sub(d, 1, a - 1), sub(d, a + 1, b - 1)
  local t = items_of[it]
  if not t then
    local ok
    ok, t = pcall(item_of, it)
    if not ok then
      return nil
    end
  end
  if t.said ~= '' then
    all_sales[t.said] = true
  else
    all_products[t.pid] = true
  end
  call_r('DEL', uk)
  local k = t.k
  deltas[k] = (deltas[k] or 0) + t.q
  local tc = t.tc
  call_r('HSET', ouk, oid, '|' .. tc .. '|' .. currency .. '|' .. now_us .. '|' .. base .. sj .. '|' .. it .. '|',
    kf, oid .. '|' .. now_us .. '|')
  ordered[#ordered + 1] = oid .. ' ' .. uid
  return it, tc, currency, t.one_product, t.one_sale
end

-- ids_of joins the ids of a set ("" if empty).
local function ids_of(set)
  local first = next(set)
  if first == nil then
    return ''
  end
  if next(set, first) == nil then
    return first
  end
  local out = {}
  for id in pairs(set) do
    out[#out + 1] = id
  end
  return table.concat(out, ',')
end

local out = {'', ''} -- see flat_reply
-- A checkout that placed its order and answers the previous item's flags, touched
-- records and order slots (a storm's checkouts of one sale: the same item, total and
-- currency) answers flags "=" and "" in those six slots: the reply carries them once;
-- with no message and no cleared ids, it is one of a run of such items, answered as
-- one string "=<k>" (k of them: no dropped ids, which no caller reads; since
-- 2026-12-06: before, each was "=" and its dropped ids).
local p3, p6, p7, p8, p9, p10, p11 -- the previous item's slots 3 and 6 to 11
local reps = 0 -- the current run of such items (not in out yet)
local nargs, base, sfx = #ARGV, A[1], seq_suffixes()
local i, run, j = 2, 0, 0 -- the next argument; the short items left in the current run; the item's place
while i <= nargs do
  local n, at, done = 0, i, false -- (n 0: the short form)
  if run == 0 and byte(A[i]) == 45 then -- "-k": a run of k short items
    run, at = -(A[i] + 0), i + 1
    if run < 1 then
      error('checkout: a run of ' .. A[i])
    end
  end
  j = j + 1
  local sj = sfx[j] or seq_suffix(j)
  if run > 0 then -- the usual checkout's short form: usual_one first
    run = run - 1
    i = at + 4
    local it, tc, cur, prod, sale = usual_one(at, base, sj)
    if it then
      if p3 == 'cse' and prod == p6 and sale == p7 and it == p8 and tc == p9 and cur == p10 and p11 == '' then
        reps = reps + 1
      else
        reps = end_run(out, reps)
        local k = #out
        out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] = '', '', 'cse', '', '', prod
        out[k + 7], out[k + 8], out[k + 9], out[k + 10], out[k + 11] = sale, it, tc, cur, ''
        p3, p6, p7, p8, p9, p10, p11 = 'cse', prod, sale, it, tc, cur, ''
      end
      done = true
    end
  else
    n, at = A[i] + 0, i + 1 -- (one strtod; tonumber converts twice)
    i = at + n
  end
  if not done then
    one_product = nil
    local ok, e, m, flags, dropped, cleared, order, total, currency, expired = pcall(checkout_one, at, n, base .. sj)
    if not ok then
      e, m, flags, dropped, cleared, order, total, currency, expired = 'item_failed', item_error(e), '', '', '', '', '', '', ''
    end
    local k, products, sales = #out, one_product, one_sale
    if not products then
      -- The item's touched records (the other paths' and lib.lua's, in touched): the
      -- batch's, and the same two tables emptied for the next item (not new ones).
      local tp, ts = touched.products, touched.sales
      products, sales = ids_of(tp), ids_of(ts)
      for id in pairs(tp) do
        all_products[id], tp[id] = true, nil
      end
      for id in pairs(ts) do
        all_sales[id], ts[id] = true, nil
      end
    end
    local same = e == '' and flags == p3 and products == p6 and sales == p7 and order == p8 and
      total == p9 and currency == p10 and expired == p11
    if same and m == '' and cleared == '' then
      reps = reps + 1
    else
      reps = end_run(out, reps)
      k = #out
      out[k + 1], out[k + 2], out[k + 4], out[k + 5] = e, m, dropped, cleared
      if same then
        out[k + 3], out[k + 6], out[k + 7], out[k + 8], out[k + 9], out[k + 10], out[k + 11] = '=', '', '', '', '', '', ''
      else
        out[k + 3], out[k + 6], out[k + 7] = flags, products, sales
        out[k + 8], out[k + 9], out[k + 10], out[k + 11] = order, total, currency, expired
      end
    end
    p3, p6, p7, p8, p9, p10, p11 = flags, products, sales, order, total, currency, expired
  end
end
end_run(out, reps)
touched.products, touched.sales = all_products, all_sales
for k, q in pairs(deltas) do
  redis.call('HINCRBY', k, 'held', string.format('%d', -q))
  redis.call('HINCRBY', k, 'sold', string.format('%d', q))
end
if #ordered > 0 then
  call_many('RPUSH', key('orders'), ordered)
end
-- The stream's expiry set is no longer written (see hold.lua); holds made before
-- leave it here as before, while it exists.
if #unindexed > 0 and (exp_set or (exp_set == nil and redis.call('EXISTS', key('exp')) == 1)) then
  call_many('ZREM', key('exp'), unindexed)
end
return flat_reply(out)
