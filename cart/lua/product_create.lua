-- product_create: ARGV = max_products (the stream's bound, ≤ 0 for none), then field,
-- value, ... of the new product (stock included).
local max = num(ARGV[1])
local p = {}
for i = 2, #ARGV, 2 do
  p[ARGV[i]] = ARGV[i + 1]
end
local st = hgetall(key('stream'))
if not st then
  return fail('not_found', 'stream not found')
end
if st.status == 'ended' then
  return fail('conflict', 'stream has ended')
end
if redis.call('EXISTS', key('p', p.id)) == 1 then
  return fail('conflict', 'product exists')
end
if (st.currency or '') ~= '' and st.currency ~= p.currency then
  return fail('conflict', "the stream's products are priced in " .. st.currency)
end
-- Hidden products count: they are stored and listed too.
if max > 0 and redis.call('LLEN', key('products')) >= max then
  return fail('conflict', 'a stream has at most ' .. max .. ' products')
end
redis.call('HSET', key('stream'), 'currency', p.currency)
p.held = '0'
p.sold = '0'
p.hidden = '0'
hset(key('p', p.id), p)
-- The units put in (its stock now), for the invariant (see units.lua); apart from
-- the product's hash, which every hold's reply carries.
redis.call('HSET', key('putin'), p.id, p.stock)
redis.call('RPUSH', key('products'), p.id)
return reply({product = p})
