-- Sum the per-node viewer counts of a stream that have not expired; drop the others.
-- KEYS[1] hash node → "count:expires_ms"; ARGV[1] now in ms
local all = redis.call('HGETALL', KEYS[1])
local total = 0
local now = tonumber(ARGV[1])
for i = 1, #all, 2 do
  local c, exp = string.match(all[i + 1], '^(%d+):(%d+)$')
  if c and tonumber(exp) > now then
    total = total + tonumber(c)
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return total
