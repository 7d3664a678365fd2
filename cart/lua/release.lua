-- release: ARGV = now_us, max, hold id, ... Gives back the units of the listed holds
-- that are due, then of other due holds of the stream, at most max in all. The holds
-- stay in their carts as expired. Answers n, the number released.
local now, max = num(ARGV[1]), num(ARGV[2])
local n = 0
local function try(id)
  local h = hold_of(id)
  if not h or h.state == 'expired' then
    redis.call('ZREM', key('exp'), id)
    return
  end
  if due(h, now) then
    release_hold(h)
    n = n + 1
  end
end
for i = 3, #ARGV do
  if n >= max then
    break
  end
  try(ARGV[i])
end
if n < max then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', key('exp'), '-inf', ARGV[1], 'LIMIT', 0, max - n)) do
    try(id)
  end
end
return reply({n = n})
