-- release: ARGV = now_us, max, hold, ... Gives back the units of the listed holds
-- that are due, then of other due holds of the stream, at most max in all. The holds
-- stay in their carts as expired. Answers n, the number released, and later: the
-- listed holds that are live and not due, "<i> <expires_us>" each (i: its place in
-- the list, from 1), joined by "," (absent if none). A hold is listed as "<hold id>
-- <user id>" (its cart: see lib.lua; made since 2026-12-04), or as its id (older).
local now, max = num(ARGV[1]), num(ARGV[2])
local n = 0
local later = {}
local function try(arg, i)
  local id, uid = string.match(arg, '^(%S+) (.*)$')
  local h
  if id then
    h = cart_hold(key('uh', uid), id, uid)
    if h == nil then -- not in its user's cart (a hash): ordered, removed or never made
      return
    end
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
  elseif i then
    later[#later + 1] = i .. ' ' .. h.exp_us
  end
end
for i = 3, #ARGV do
  if n >= max then
    break
  end
  try(ARGV[i], i - 2)
end
if n < max then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', key('exp'), '-inf', ARGV[1], 'LIMIT', 0, max - n)) do
    try(id)
  end
end
return reply({n = n, later = #later > 0 and table.concat(later, ',') or nil})
