-- lib: core
-- cart (read only): ARGV = user id, idempotency key hash or "", now_us. Answers the
-- record of the key in this stream ("" if none or older than 24 h) followed by the
-- user's holds here, oldest first, each as a flat field/value array ending with its
-- id (see hold_of in lib.lua).
local out = {''}
if ARGV[2] ~= '' then
  -- (in the user's orders here, or in the older form's string: see checkout.lua)
  local rec = redis.pcall('HGET', key('uo', ARGV[1]), 'k:' .. ARGV[2])
  if type(rec) == 'table' then
    rec = redis.call('GET', key('idem', ARGV[2]))
  end
  if rec then
    local at = string.match(rec, '^[^|]*|([^|]*)|')
    if num(ARGV[3]) - num(at) < 86400000000 then
      out[1] = rec
    end
  end
end
for _, id in ipairs(redis.call('LRANGE', key('uh', ARGV[1]), 0, -1)) do
  local a = redis.call('HGETALL', key('h', id))
  if #a > 0 then
    local n = #a
    a[n + 1], a[n + 2] = 'id', id
    out[#out + 1] = a
  end
end
return out
