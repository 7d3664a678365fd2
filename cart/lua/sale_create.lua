-- sale_create: ARGV = now_us, max_sales (the stream's bound, ≤ 0 for none), then field,
-- value, ... of the new sale (id, product_id, quantity, starts_us, ends_us, ...). The
-- quantity leaves the product's stock.
local now = num(ARGV[1])
local max = num(ARGV[2])
local s = {}
for i = 3, #ARGV, 2 do
  s[ARGV[i]] = ARGV[i + 1]
end
local q = num(s.quantity)
local pk = key('p', s.product_id)
local p = hgetall(pk)
if not p or p.hidden == '1' then
  return fail('not_found', 'product ' .. s.product_id)
end
local st = hgetall(key('stream'))
if not st or st.status == 'ended' then
  return fail('conflict', 'stream has ended')
end
if redis.call('EXISTS', key('s', s.id)) == 1 then
  return fail('conflict', 'sale exists')
end
-- Ended sales count: they are stored and listed too.
if max > 0 and redis.call('LLEN', key('sales')) >= max then
  return fail('conflict', 'a stream has at most ' .. max .. ' sales')
end
if num(p.stock) < q then
  return fail('conflict', 'product has ' .. p.stock .. ' units in stock, the sale wants ' .. s.quantity)
end
redis.call('HINCRBY', pk, 'stock', -q)
s.status = 'active'
if num(s.starts_us) > now then
  s.status = 'scheduled'
end
s.remaining = s.quantity
s.held = '0'
s.sold = '0'
s.returned = '0'
hset(key('s', s.id), s)
-- The per-user counts (su) start with one field too long for Redis's compact hash
-- encoding (hash-max-listpack-value, 64 by default), so the hash is a hashtable from
-- the start: as a listpack (up to hash-max-listpack-entries users, 512 by default)
-- every hold's HINCRBY scanned it from the front, twice (~30k instructions at 256
-- users, against ~2k). Its value "0" counts like a user with no units, so a user id
-- equal to it (it would have to be this very string) is counted right as well.
redis.call('HSET', key('su', s.id), su_pad, '0')
redis.call('RPUSH', key('sales'), s.id)
touch_product(s.product_id)
return reply({sale = s})
