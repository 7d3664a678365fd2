-- unclaim: KEYS[1] = a global idempotency key (not a stream's), ARGV = token. Frees
-- the key if the checkout holding this token still holds it.
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 8 + #ARGV[1]) == 'pending|' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return reply({})
