-- claim: KEYS[1] = the user's key base "<prefix>{u:<user id>}:"; ARGV = key hash,
-- token, fingerprint, now_us, pending ms, stream id or "". Takes the idempotency key
-- for one checkout ("pending|token|fp", expiring by itself if that checkout dies)
-- unless a checkout holds it or placed an order with it in the last 24 h
-- ("done|sid|oid|at_us|fp"). Answers "claimed" or the key's value, then the stream
-- the user's order index now lists for this checkout ("" if none), then the streams
-- of the user's cart, each followed by its generation (see prune.lua).
-- A claimed checkout of the given stream, or else of the cart's only stream, lists
-- that stream in the user's order index here, before its order is placed (a claim
-- that places no order leaves a harmless entry that lists nothing).
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
-- The cart index is the generation hash; the set "holds" is its older form, still
-- read so that carts listed only there are found.
local gens, seen = redis.call('HGETALL', key('gen')), {}
for i = 1, #gens, 2 do
  seen[gens[i]] = true
  out[#out + 1] = gens[i]
  out[#out + 1] = gens[i + 1]
end
for _, sid in ipairs(redis.call('SMEMBERS', key('holds'))) do
  if not seen[sid] then
    out[#out + 1] = sid
    out[#out + 1] = '0'
  end
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
