-- claim: KEYS[1] = the user's key base "<prefix>{u:<user id>}:"; ARGV = key hash,
-- token, fingerprint, now_us, pending ms. Takes the idempotency key for one checkout
-- ("pending|token|fp", expiring by itself if that checkout dies) unless a checkout
-- holds it or placed an order with it in the last 24 h ("done|sid|oid|at_us|fp").
-- Answers "claimed" or the key's value, then the streams of the user's cart, each
-- followed by its generation (see prune.lua).
local ik = key('idem', ARGV[1])
local out = {'claimed'}
local v = redis.call('GET', ik)
local at = v and string.match(v, '^done|[^|]*|[^|]*|([^|]*)|')
if v and (not at or num(ARGV[4]) - num(at) < 86400000000) then
  out[1] = v
else
  redis.call('SET', ik, 'pending|' .. ARGV[2] .. '|' .. ARGV[3], 'PX', ARGV[5])
end
for _, sid in ipairs(redis.call('SMEMBERS', key('holds'))) do
  out[#out + 1] = sid
  out[#out + 1] = redis.call('HGET', key('gen'), sid) or '0'
end
return out
