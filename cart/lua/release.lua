-- release: ARGV = now_us, max, hold, ... Gives back the units of the listed holds
-- that are due, then of other due holds of the stream, at most max in all. The holds
-- stay in their carts as expired. Answers n, the number released. A hold is listed
-- as "<hold id> <user id>" (its cart: see lib.lua; the holddue:u member of a hold made
-- since 2026-12-04), or as its id (older).
local now, max = num(ARGV[1]), num(ARGV[2])
local n = 0
local function try(arg)
  local id, uid = string.match(arg, '^(%S+) (.*)$')
  local h
  if id then
    h = cart_hold(key('uh', uid), id)
  else
    id = arg
  end
  if not h then -- the older forms: a cart of that form holds the hold as its own key
    h = hold_of(id)
  end
  if not h or h.state == 'expired' then
    if not h or not h.cart then
      redis.call('ZREM', key('exp'), id)
    end
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
