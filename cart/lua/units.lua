-- lib: core
-- units (read only): ARGV = ids of products of the stream. Answers, for each id in
-- order, {the product's hash as a flat field/value array (empty if there is none),
-- its units put in ("" when not kept: a product created before 2026-12-05), Σ over
-- its sales (quantity − returned)}: one script, so a product and its sales are read
-- at one moment and its invariant holds in the answer unless the numbers are wrong.
local want, out = {}, {}
for i = 1, #ARGV do
  want[ARGV[i]] = 0
end
for _, said in ipairs(redis.call('LRANGE', key('sales'), 0, -1)) do
  local s = redis.call('HMGET', key('s', said), 'product_id', 'quantity', 'returned')
  local pid = s[1]
  if pid and want[pid] then
    want[pid] = want[pid] + num(s[2]) - num(s[3])
  end
end
local put_in = redis.call('HMGET', key('putin'), unpack(ARGV))
for i = 1, #ARGV do
  out[i] = {redis.call('HGETALL', key('p', ARGV[i])), put_in[i] or '', tostring(want[ARGV[i]])}
end
return out
