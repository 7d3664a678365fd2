-- unclaim: KEYS[1] = the user's key base; ARGV = key hash, token. Frees the
-- idempotency key if the checkout holding this token still holds it.
local ik = key('idem', ARGV[1])
local v = redis.call('GET', ik)
if v and string.sub(v, 1, 8 + #ARGV[2]) == 'pending|' .. ARGV[2] then
  redis.call('DEL', ik)
end
return reply({})
