-- lib: core
-- claim: KEYS[1] = the user's key base "<prefix>{u:<user id>}:"; ARGV = key hash,
-- token (<random>:<now_us> since 2026-12-06), fingerprint, now_us, pending ms,
-- stream id or "", "1" if the cart index's
-- older form may still exist (until migrate_holds.lua ran for every user). Takes the
-- idempotency key for one checkout ("pending|token|fp|until_ms", by Redis's clock) unless
-- a checkout holds it (until until_ms) or placed an order with it in the last 24 h
-- ("done|sid|oid|at_us|fp"). Answers "claimed" or the key's value, then the streams
-- of the user's cart, each followed by its generation (the caller knows which stream
-- the user's order index now lists for a claimed checkout: see below). A pending mark
-- past its time is a checkout that died or lost its answer, or (since 2026-12-06, the
-- usual) one that placed its order, after which no done mark is written: its key is
-- taken over with "reclaimed" (the caller looks for the key's record in the user's
-- streams first, and answers the order it finds). The mark stays 24 h for that.
-- A claimed checkout of the given stream, or else of the cart's only stream, lists
-- that stream in the user's order index here, before its order is placed (a claim
-- that places no order leaves a harmless entry that lists nothing).
--
-- The cart index: gen (stream → generation, a new unique value each time holds are
-- added there, written after their script) and its older form, the set holds (read
-- with generation "0"; written before 2026-12-01 evening, moved into gen by
-- migrate_holds.lua). An order that empties the user's cart in a stream records the
-- generation its claim saw in the same hash, as field "~" .. stream id (a plain
-- HSET after the answer); a stream whose generation is still that one has had no
-- hold since and is forgotten here. A hold that raced the order changed the
-- generation, so its stream stays. Every "~" record is used or stale once read: one
-- HDEL drops them with the forgotten streams (stream ids never start with "~").
-- Since 2026-12-06 a hold batch adds the field <generation> = "+" .. stream id
-- instead (one per batch that added to the user's cart there), and the order that
-- empties the cart deletes the fields its claim read (see finishCheckout in
-- redis_cart.go): such a field is answered as it is (field, value), the caller takes
-- the stream from the value. (Generations are hold ids and "0": never "+…".)
local ik = key('idem', ARGV[1])
local out = {'claimed', nil, nil} -- room for one stream (no rehash when it comes)
local t = redis.call('TIME')
local now_ms = num(t[1]) * 1000 + math.floor(num(t[2]) / 1000)
local mark = 'pending|' .. ARGV[2] .. '|' .. ARGV[3] .. '|' .. string.format('%d', now_ms + num(ARGV[5]))
-- A new key (the usual case) is taken by this one command; a key in use is read.
local claimed, stale, v = redis.call('SET', ik, mark, 'NX', 'PX', '86400000'), false, nil
if not claimed then
  v = redis.call('GET', ik)
  local at = v and string.match(v, '^done|[^|]*|[^|]*|([^|]*)|')
  local till = v and string.match(v, '^pending|[^|]*|[^|]*|(%d+)$')
  -- A pending mark claimed 24 h before the call's now (its token's at_us, by the
  -- nodes' clock as a done mark's at_us) is forgotten, as a done mark of then is (an
  -- order leaves its pending mark). (Marks of before 2026-12-06 have no at_us.)
  local cat = till and string.match(v, '^pending|[^|:]*:(%d+)|')
  local aged = cat and num(ARGV[4]) - num(cat) >= 86400000000
  stale = till and not aged and num(till) <= now_ms
  claimed = not v or stale or aged or (at and num(ARGV[4]) - num(at) >= 86400000000)
  if claimed then
    redis.call('SET', ik, mark, 'PX', '86400000')
  end
end
if not claimed then
  out[1] = v
elseif stale then
  out[1] = 'reclaimed'
end
-- (The tables emptied, drop and seen are made only when needed: a new buyer's index
-- has one field and no "~" record, and every table costs Redis an allocation.)
local gens, emptied, drop = redis.call('HGETALL', key('gen')), nil, nil
for i = 1, #gens, 2 do
  if string.byte(gens[i]) == 126 then -- '~': an order emptied the cart there
    if not emptied then
      emptied, drop = {}, {}
    end
    emptied[string.sub(gens[i], 2)] = gens[i + 1]
    drop[#drop + 1] = gens[i]
  end
end
local seen = ARGV[7] == '1' and {} or nil -- the older form may still exist (see migrate_holds.lua)
for i = 1, #gens, 2 do
  local sid, gen = gens[i], gens[i + 1]
  if string.byte(gen) == 43 then -- '+': a generation's field
    if seen then
      seen[string.sub(gen, 2)] = true
    end
    out[#out + 1] = sid
    out[#out + 1] = gen
  elseif string.byte(sid) ~= 126 then
    if seen then
      seen[sid] = true
    end
    if emptied and emptied[sid] == gen then
      drop[#drop + 1] = sid
    else
      out[#out + 1] = sid
      out[#out + 1] = gen
    end
  end
end
if seen then
  emptied = emptied or {}
  for _, sid in ipairs(redis.call('SMEMBERS', key('holds'))) do
    if seen[sid] then
    elseif emptied[sid] == '0' then
      redis.call('SREM', key('holds'), sid)
    else
      out[#out + 1] = sid
      out[#out + 1] = '0'
    end
  end
end
if drop then
  redis.call('HDEL', key('gen'), unpack(drop))
end
local ix = ARGV[6]
if ix == '' and #out == 3 then
  ix = out[2]
  if string.byte(out[3]) == 43 then
    ix = string.sub(out[3], 2)
  end
end
if claimed and ix ~= '' then
  redis.call('SADD', key('orders'), ix)
end
return out
