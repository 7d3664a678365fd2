-- Sum the per-node viewer counts of a stream that have not expired (by Redis's time,
-- as setcount.lua sets them); drop the others.
-- KEYS[1] hash node → "count:expires_ms"
local all = redis.call('HGETALL', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = 0
for i = 1, #all, 2 do
  local c, exp = string.match(all[i + 1], '^(%d+):(%d+)$')
  if c and tonumber(exp) > now then
    total = total + tonumber(c)
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return total
