-- lib: core
-- cart (read only): ARGV = user id, idempotency key hash or "", now_us. Answers the
-- record of the key in this stream ("" if none or older than 24 h) followed by the
-- user's holds here, each as a flat field/value array ending with its id (see
-- hold_of in lib.lua; the caller sorts them).
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
-- The cart: a hash of hold id → record ("-" .. record once released), or the older
-- list of hold ids, each hold its own hash (see lib.lua).
local uk = key('uh', ARGV[1])
local c = redis.pcall('HGETALL', uk)
if c.err then
  for _, id in ipairs(redis.call('LRANGE', uk, 0, -1)) do
    local a = redis.call('HGETALL', key('h', id))
    if #a > 0 then
      local n = #a
      a[n + 1], a[n + 2] = 'id', id
      out[#out + 1] = a
    end
  end
  return out
end
for i = 1, #c, 2 do
  local v = c[i + 1]
  if string.byte(v) == 45 then -- '-': released
    out[#out + 1] = {'d', string.sub(v, 2), 'state', 'expired', 'id', c[i]}
  else
    out[#out + 1] = {'d', v, 'id', c[i]}
  end
end
return out
