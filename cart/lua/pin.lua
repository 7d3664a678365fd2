-- pin: ARGV = "pin" or "unpin", product id, max pins. Answers the pins after the
-- change (ids in order, and their products).
local op, pid, max = ARGV[1], ARGV[2], num(ARGV[3])
local p = hgetall(key('p', pid))
if not p then
  return fail('not_found', 'product ' .. pid)
end
local pins = redis.call('LRANGE', key('pins'), 0, -1)
local pinned = false
for _, id in ipairs(pins) do
  if id == pid then
    pinned = true
  end
end
local changed = false
if op == 'pin' and not pinned then
  if p.hidden == '1' then
    return fail('conflict', 'product ' .. pid .. ' is hidden')
  end
  if redis.call('HGET', key('stream'), 'status') == 'ended' then
    return fail('conflict', 'stream has ended')
  end
  if #pins >= max then
    return fail('conflict', 'at most ' .. max .. ' products can be pinned')
  end
  redis.call('RPUSH', key('pins'), pid)
  changed = true
elseif op == 'unpin' and pinned then
  redis.call('LREM', key('pins'), 0, pid)
  changed = true
end
pins = redis.call('LRANGE', key('pins'), 0, -1)
local products = {}
for _, id in ipairs(pins) do
  products[id] = hgetall(key('p', id))
end
return reply({pins = table.concat(pins, ','), pinned = products, changed = changed})
