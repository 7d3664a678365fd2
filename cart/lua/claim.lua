-- claim: KEYS[1] = a global idempotency key (not a stream's); ARGV = token,
-- fingerprint, now_us, pending ms. Takes the key for one checkout ("pending|token|fp",
-- expiring by itself if that checkout dies) unless a checkout holds it or placed an
-- order with it in the last 24 h ("done|sid|oid|at_us|fp"): then answers its value.
local v = redis.call('GET', KEYS[1])
if v then
  local at = string.match(v, '^done|[^|]*|[^|]*|([^|]*)|')
  if not at or num(ARGV[3]) - num(at) < 86400000000 then
    return v
  end
end
redis.call('SET', KEYS[1], 'pending|' .. ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[4])
return 'claimed'
