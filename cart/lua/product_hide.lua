-- product_hide: ARGV = product id, hidden ("1" or "0"). Hiding unpins.
local pk = key('p', ARGV[1])
local p = hgetall(pk)
if not p then
  return fail('not_found', 'product not found')
end
if p.hidden == ARGV[2] then
  return reply({product = p, changed = false, unpinned = false})
end
redis.call('HSET', pk, 'hidden', ARGV[2])
p.hidden = ARGV[2]
local unpinned = false
if ARGV[2] == '1' then
  unpinned = redis.call('LREM', key('pins'), 0, ARGV[1]) > 0
end
return reply({product = p, changed = true, unpinned = unpinned})
