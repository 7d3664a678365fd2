-- lib.lua is prepended to every script (its core, up to the line "-- end of the
-- core", to a script whose first line is "-- lib: core": defining the rest costs
-- every call of a script some µs). KEYS[1] is the stream's key base
-- "<prefix>{<stream_id>}:": every key a script touches starts with it, so one call
-- stays on one Redis Cluster slot. Scripts check everything before they write (Redis
-- does not roll back a script that fails half way) and answer with one JSON object:
-- {e = error code, m = message} on a business error, plus the products and sales the
-- call touched, as they are after the change. Numbers above 1e14 (times in µs) are
-- only ever passed in as strings and stored as given.
local B = KEYS[1]

-- key(kind) or key(kind, id): B .. kind [.. ':' .. id] (no table per call: scripts
-- name a dozen keys per item of a batch)
local function key(a, b)
  if b then
    return B .. a .. ':' .. b
  end
  return B .. a
end

local function num(x)
  return tonumber(x) or 0
end
-- end of the core

-- redis_now_us is Redis's clock (TIME) in µs, as a string (a number this large would
-- be formatted with 14 digits). Scripts that judge a lease use it, not a node's clock.
local function redis_now_us()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end

local function hgetall(k)
  local a = redis.call('HGETALL', k)
  if #a == 0 then
    return nil
  end
  local t = {}
  for i = 1, #a, 2 do
    t[a[i]] = a[i + 1]
  end
  return t
end

-- A hold's record d, since 2026-12-06, is product_id,sale_id,quantity,unit_price_cents
-- (its order item, as an order's items keep it) then currency, expires_us,
-- created_us and seq, joined by "|": what its field (the hold id), its key (the stream;
-- the user, uh:<uid>) and expires_us (expires_at, to the µs) do not say already. It
-- is the value of field <hold id> in the user's cart here, the hash uh:<uid> (one key
-- per user and stream: a hold is one HSETNX, a checkout reads the cart and its holds
-- with one HGETALL); "-" .. d once the hold is released (expired; live until then: a
-- record starts with a product id, never "-"). From 2026-12-02 to 12-06 d was
-- product_id|sale_id|quantity|unit_price_cents|currency|expires_at|expires_us|
-- created_us|seq|user_id (the user id last: it may hold a "|"; a product id holds no
-- ","), which the cart may still hold; a hold of the older cart (below) still has
-- it, with expires_at "" since 2026-12-06 (read as expires_us's). Before 2026-12-04,
-- the cart uh:<uid> was a list of hold ids and each hold the hash h:<id> of two
-- fields: d, and state "expired" once released; a user whose cart here has that form
-- (a list: the new form's commands answer WRONGTYPE) gets it still, until the cart is
-- emptied. Records written before 2026-12-02 have a field each (and id, stream_id,
-- state "live"); they are read the same. A hold's id and stream are its key's (or
-- field's).
local hold_form = '^([^,|]*),([^,|]*),([^,|]*),([^,|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$'
local hold_pattern = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$'

-- hold_record is a new hold's d in the user's cart (the newer form above).
local function hold_record(pid, said, qty, price, currency, exp_us, created_us, seq)
  return pid .. ',' .. said .. ',' .. qty .. ',' .. price .. '|' .. currency .. '|' .. exp_us ..
    '|' .. created_us .. '|' .. seq
end

-- older_hold_record is a new hold's d in the older cart's h:<id> (the 10 fields above).
local function older_hold_record(pid, said, qty, price, currency, exp_us, created_us, seq, uid)
  return pid .. '|' .. said .. '|' .. qty .. '|' .. price .. '|' .. currency .. '||' .. exp_us ..
    '|' .. created_us .. '|' .. seq .. '|' .. uid
end

-- unpack_hold is the hold id of record d, of either form; a record of the newer form
-- is user uid's (its cart's).
local function unpack_hold(id, d, state, uid)
  local pid, said, qty, price, cur, exp_us, cre, seq = string.match(d, hold_form)
  if pid then
    return {id = id, user_id = uid, product_id = pid, sale_id = said, quantity = qty,
      unit_price_cents = price, currency = cur, exp_us = exp_us, created_us = cre, seq = seq,
      state = state}
  end
  local exp_at, u
  pid, said, qty, price, cur, exp_at, exp_us, cre, seq, u = string.match(d, hold_pattern)
  return {id = id, user_id = u, product_id = pid, sale_id = said, quantity = qty,
    unit_price_cents = price, currency = cur, expires_at = exp_at ~= '' and exp_at or nil,
    exp_us = exp_us, created_us = cre, seq = seq, state = state}
end

-- in_cart is the hold id of user uid's cart uk of the newer form (see above), from
-- its stored value v: its table has cart = uk and d, its record as stored.
local function in_cart(uk, id, v, uid)
  local h
  if string.byte(v) == 45 then -- '-': released
    h = unpack_hold(id, string.sub(v, 2), 'expired', uid)
  else
    h = unpack_hold(id, v, nil, uid)
  end
  h.cart, h.d = uk, v
  return h
end

-- cart_hold reads hold id in user uid's cart uk: nil if missing, false if the cart has
-- the older form (a list, or a key of another type: see above).
local function cart_hold(uk, id, uid)
  local v = redis.pcall('HGET', uk, id)
  if type(v) == 'table' then
    return false
  end
  return v and in_cart(uk, id, v, uid) or nil
end

-- hold_of reads hold id of the older forms (nil if missing).
local function hold_of(id)
  local h = hgetall(key('h', id))
  if h and h.d then
    return unpack_hold(id, h.d, h.state)
  end
  if h then
    h.id = id
  end
  return h
end

-- A batch item's seq (hold.lua, checkout.lua; since 2026-12-06) is the batch's seq base
-- (ARGV[1]: the node's clock in µs, made to grow by at least one per batch, see
-- seqBase in redis_cart.go) followed by the item's place in the batch, 3 digits from
-- "000": the node's clock in ns as before, at most 19 digits, without an argument per
-- item. seq_suffixes are those 3 digits (the literals: no string.format per item);
-- seq_suffix(j) is the j-th (1-based).
local function seq_suffixes()
  return {
    '000', '001', '002', '003', '004', '005', '006', '007', '008', '009', '010', '011', '012', '013', '014', '015',
    '016', '017', '018', '019', '020', '021', '022', '023', '024', '025', '026', '027', '028', '029', '030', '031',
    '032', '033', '034', '035', '036', '037', '038', '039', '040', '041', '042', '043', '044', '045', '046', '047',
    '048', '049', '050', '051', '052', '053', '054', '055', '056', '057', '058', '059', '060', '061', '062', '063',
    '064', '065', '066', '067', '068', '069', '070', '071', '072', '073', '074', '075', '076', '077', '078', '079',
    '080', '081', '082', '083', '084', '085', '086', '087', '088', '089', '090', '091', '092', '093', '094', '095',
    '096', '097', '098', '099', '100', '101', '102', '103', '104', '105', '106', '107', '108', '109', '110', '111',
    '112', '113', '114', '115', '116', '117', '118', '119', '120', '121', '122', '123', '124', '125', '126', '127',
    '128', '129', '130', '131', '132', '133', '134', '135', '136', '137', '138', '139', '140', '141', '142', '143',
    '144', '145', '146', '147', '148', '149', '150', '151', '152', '153', '154', '155', '156', '157', '158', '159',
    '160', '161', '162', '163', '164', '165', '166', '167', '168', '169', '170', '171', '172', '173', '174', '175',
    '176', '177', '178', '179', '180', '181', '182', '183', '184', '185', '186', '187', '188', '189', '190', '191',
    '192', '193', '194', '195', '196', '197', '198', '199'
  }
end
local function seq_suffix(j)
  return string.format('%03d', j - 1)
end

local function hset(k, t)
  local a = {}
  for f, v in pairs(t) do
    a[#a + 1] = f
    a[#a + 1] = v
  end
  redis.call('HSET', k, unpack(a))
end

-- su_pad is the field that keeps a sale's per-user counts out of the listpack
-- encoding (see sale_create.lua): longer than 64 bytes, value "0".
local su_pad = '~ not a user: this field keeps the hash out of the listpack encoding ~'

local touched = {products = {}, sales = {}}
local function touch_product(id) touched.products[id] = true end
local function touch_sale(id) touched.sales[id] = true end

-- pack turns a record (a table of strings, or the flat field/value array HGETALL
-- answers) into one string, each field and value as <length>:<bytes>: one JSON string
-- in the reply instead of an object is much cheaper to encode here and to decode in
-- Go (see hashReply in redis.go). nil stays nil.
-- A length's "<n>:" is looked up, not formatted each time (Lua formats a number in a
-- concatenation with sprintf "%.14g", a visible part of Redis's CPU in a storm).
local len_prefix = {}
local function lp(s)
  local n = #s
  local p = len_prefix[n]
  if not p then
    p = string.format('%d:', n)
    len_prefix[n] = p
  end
  return p
end

local function pack(t, flat)
  if t == nil then
    return nil
  end
  local a = {}
  if flat then
    for i = 1, #t do
      a[i] = lp(t[i]) .. t[i]
    end
  else
    for f, v in pairs(t) do
      v = tostring(v)
      a[#a + 1] = lp(f) .. f .. lp(v) .. v
    end
  end
  return table.concat(a)
end

local function packed_hash(k)
  local a = redis.call('HGETALL', k)
  if #a == 0 then
    return nil
  end
  return pack(a, true)
end

local function reply(r)
  r = r or {}
  for _, f in ipairs({'stream', 'product', 'sale', 'hold', 'order'}) do
    if type(r[f]) == 'table' then
      r[f] = pack(r[f])
    end
  end
  if r.pinned then
    for id, p in pairs(r.pinned) do
      r.pinned[id] = pack(p)
    end
  end
  if r.results then
    for _, res in ipairs(r.results) do
      res.hold = pack(res.hold)
      res.order = pack(res.order)
    end
  end
  r.products = {}
  for id in pairs(touched.products) do
    r.products[id] = packed_hash(key('p', id))
  end
  r.sales = {}
  for id in pairs(touched.sales) do
    r.sales[id] = packed_hash(key('s', id))
  end
  return cjson.encode(r)
end

local function fail(code, msg)
  return reply({e = code, m = msg})
end

-- end_sale ends a scheduled or active sale: its remaining units go back to the
-- product's stock and count as returned. False if it had ended already. Ended before
-- its planned end by a stop or its stream's end at now_us (a string of micros; now_at
-- the same time in RFC 3339), it ends then: ends_at and ends_us become now's, as the
-- embedded store's endSale does. Ended by its time, now_us is nil.
local function end_sale(id, now_us, now_at)
  local sk = key('s', id)
  local s = hgetall(sk)
  if s == nil or s.status == 'ended' then
    return false
  end
  local rem = num(s.remaining)
  redis.call('HSET', sk, 'status', 'ended', 'remaining', '0')
  if now_us and num(now_us) < num(s.ends_us) then
    redis.call('HSET', sk, 'ends_at', now_at, 'ends_us', now_us)
  end
  redis.call('HINCRBY', sk, 'returned', rem)
  redis.call('HINCRBY', key('p', s.product_id), 'stock', rem)
  touch_sale(id)
  touch_product(s.product_id)
  return true
end

-- release_hold gives a live hold's units back (to the sale, or to the product when
-- the sale has ended) and marks it expired; it stays in the cart. False if the hold
-- was not live.
local function release_hold(h)
  if h.state == 'expired' then
    return false
  end
  local q = num(h.quantity)
  if h.sale_id ~= '' then
    local sk = key('s', h.sale_id)
    local uk = key('su', h.sale_id)
    redis.call('HINCRBY', sk, 'held', -q)
    if redis.call('HINCRBY', uk, h.user_id, -q) <= 0 then
      redis.call('HDEL', uk, h.user_id)
    end
    if redis.call('HGET', sk, 'status') == 'ended' then
      redis.call('HINCRBY', sk, 'returned', q)
      redis.call('HINCRBY', key('p', h.product_id), 'stock', q)
      touch_product(h.product_id)
    else
      redis.call('HINCRBY', sk, 'remaining', q)
    end
    touch_sale(h.sale_id)
  else
    local pk = key('p', h.product_id)
    redis.call('HINCRBY', pk, 'held', -q)
    redis.call('HINCRBY', pk, 'stock', q)
    touch_product(h.product_id)
  end
  if h.cart then
    h.d = '-' .. h.d
    redis.call('HSET', h.cart, h.id, h.d)
  else
    redis.call('HSET', key('h', h.id), 'state', 'expired')
    redis.call('ZREM', key('exp'), h.id)
  end
  h.state = 'expired'
  return true
end

-- drop_hold takes a hold out of the cart (after release_hold or ordering).
local function drop_hold(h)
  if h.cart then
    redis.call('HDEL', h.cart, h.id)
    return
  end
  redis.call('DEL', key('h', h.id))
  redis.call('LREM', key('uh', h.user_id), '0', h.id)
  redis.call('ZREM', key('exp'), h.id)
end

-- due: a hold whose units must go back at now (live, ExpiresAt <= now).
local function due(h, now)
  return h.state ~= 'expired' and num(h.exp_us) <= now
end

-- Redis refusing work for a state of its own (see refusedByRedis in redis.go): the
-- whole call fails and the Go side answers ErrUnavailable.
local refused = {OOM = true, READONLY = true, MISCONF = true, LOADING = true, BUSY = true,
  MASTERDOWN = true, NOREPLICAS = true, CLUSTERDOWN = true, TRYAGAIN = true}

-- item_error is the answer of a batch item that failed at runtime (its pcall's
-- error r). Redis does not roll back a script that fails half way, so a runtime error
-- in one item (a malformed argument, a record with a missing field, a key of the wrong
-- type) must not abort the batch: the items before it are recorded and their counters
-- are only written after the last item. The failed item answers item_failed with the
-- error as its message (a 500 for that caller only); each item keeps its counter
-- changes in step with what it wrote, so the counters written after the batch match
-- every record, the failed item's included. Redis refusing work (see refused) fails
-- the whole call.
local function item_error(r)
  local msg = type(r) == 'table' and tostring(r.err) or tostring(r)
  if refused[string.match(msg, '^%-?(%u+)')] then
    error(r)
  end
  return msg
end

-- end_run ends a run of k repeated answers of a batch script (hold, checkout): out
-- gets the one string "=<k>" for them (see decodeFlat in redis.go) if there are any. It
-- answers 0, the next run's count.
local function end_run(out, k)
  if k > 0 then
    out[#out + 1] = '=' .. k
  end
  return 0
end

-- flat_reply answers a batch script (hold, checkout) without JSON: an array of the
-- touched sales' records, then the touched products' records (each the flat
-- field/value array HGETALL answers), then out's strings (each item's fixed number
-- of slots; see the script). Lua hands the table to Redis as it is: no encoding here.
local function flat_reply(out)
  local ss, ps = {}, {}
  for id in pairs(touched.sales) do
    ss[#ss + 1] = redis.call('HGETALL', key('s', id))
  end
  for id in pairs(touched.products) do
    ps[#ps + 1] = redis.call('HGETALL', key('p', id))
  end
  out[1], out[2] = ss, ps
  return out
end
