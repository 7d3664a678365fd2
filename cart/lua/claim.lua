-- claim: KEYS[1] = the user's key base "<prefix>{u:<user id>}:"; ARGV = key hash,
-- token, fingerprint, now_us, pending ms, stream id or "". Takes the idempotency key
-- for one checkout ("pending|token|fp", expiring by itself if that checkout dies)
-- unless a checkout holds it or placed an order with it in the last 24 h
-- ("done|sid|oid|at_us|fp"). Answers "claimed" or the key's value, then the stream
-- the user's order index now lists for this checkout ("" if none), then the streams
-- of the user's cart, each followed by its generation.
-- A claimed checkout of the given stream, or else of the cart's only stream, lists
-- that stream in the user's order index here, before its order is placed (a claim
-- that places no order leaves a harmless entry that lists nothing).
--
-- The cart index: gen (stream → generation, a new unique value each time holds are
-- added there, written after their script) and its older form, the set holds (read
-- with generation "0"). An order that empties the user's cart in a stream records
-- the generation its claim saw in emptied (a plain HSET after the answer); a stream
-- whose generation is still that one has had no hold since and is forgotten here.
-- A hold that raced the order changed the generation, so its stream stays.
local ik = key('idem', ARGV[1])
local out = {'claimed', ''}
local v = redis.call('GET', ik)
local at = v and string.match(v, '^done|[^|]*|[^|]*|([^|]*)|')
local claimed = not (v and (not at or num(ARGV[4]) - num(at) < 86400000000))
if claimed then
  redis.call('SET', ik, 'pending|' .. ARGV[2] .. '|' .. ARGV[3], 'PX', ARGV[5])
else
  out[1] = v
end
local emptied = hgetall(key('emptied')) or {}
local function forget(sid)
  redis.call('HDEL', key('gen'), sid)
  redis.call('SREM', key('holds'), sid)
end
local gens, seen = redis.call('HGETALL', key('gen')), {}
for i = 1, #gens, 2 do
  local sid, gen = gens[i], gens[i + 1]
  seen[sid] = true
  if emptied[sid] == gen then
    forget(sid)
  else
    out[#out + 1] = sid
    out[#out + 1] = gen
  end
end
for _, sid in ipairs(redis.call('SMEMBERS', key('holds'))) do
  if seen[sid] then
  elseif emptied[sid] == '0' then
    forget(sid)
  else
    out[#out + 1] = sid
    out[#out + 1] = '0'
  end
end
if next(emptied) then -- each record was used or is stale
  redis.call('DEL', key('emptied'))
end
local ix = ARGV[6]
if ix == '' and #out == 4 then
  ix = out[3]
end
if claimed and ix ~= '' then
  redis.call('SADD', key('orders'), ix)
  out[2] = ix
end
return out
