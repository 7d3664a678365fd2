-- Compare the store's current values of one stream with the ones last delivered to its
-- viewers (recorded by publish.lua) and return the keys whose delivered value differs
-- and has not been published (nor taken over) for ARGV[1] ms: a change whose node died
-- before announcing it (between the store's commit and the gate, or its event), or a
-- held-back event lost with its node. The caller publishes the store's value of each
-- (stock through the gate); each returned key is put off by ARGV[1] ms, so that one
-- node at a time does. Keys: a stock key ("stock:..."), a sale's status ("sale:<id>"),
-- a product's fields ("product:<id>", a hash; 0 when hidden, as never delivered) or
-- whether a product is pinned ("pin:<id>", 1 or 0).
-- The first comparison of the hash ("#since" not set: a new hash, or one Redis let
-- expire) takes the store's values as its baseline. After it, a sale or pin key with
-- nothing recorded was never delivered ("0": a new sale's or a pin's event was lost);
-- a stock key with nothing recorded gets the store's value as its baseline.
-- The last ARGV[3] pairs are final values (they never change again: an ended sale's
-- remaining and status); each whose delivered value is the store's is answered as
-- settled, "=" and its key, after the keys: the caller compares it no more.
-- The reply is {} or {stamp, keys..., settled...}: stamp is the time each returned
-- key's record now carries, until a publication of the key records another
-- (publish.lua's check that a rescued pin or unpin follows no newer one).
-- KEYS[1] the stream's delivered values; ARGV[1] ms, ARGV[2] ms to keep KEYS[1],
-- ARGV[3] the number of final pairs, ARGV[4..] pairs of key and the store's value
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = tonumber(ARGV[1])
local firstFinal = #ARGV - 2 * tonumber(ARGV[3]) + 1
local fresh = redis.call('HSETNX', KEYS[1], '#since', now) == 1
local out, settled = {}, {}
for i = 4, #ARGV, 2 do
  local k, v = ARGV[i], ARGV[i + 1]
  local rec = redis.call('HGET', KEYS[1], k)
  if not rec and not fresh and string.sub(k, 1, 6) ~= 'stock:' then
    rec = '0:0'
  end
  local seen, at = v, nil
  if not rec then
    redis.call('HSET', KEYS[1], k, v .. ':0')
  else
    seen, at = string.match(rec, '^(.*):(%d+)$')
    if seen ~= v and now - tonumber(at or '0') >= wait then
      redis.call('HSET', KEYS[1], k, (seen or '') .. ':' .. now)
      out[#out + 1] = k
    end
  end
  if i >= firstFinal and seen == v then
    settled[#settled + 1] = '=' .. k
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if #out + #settled > 0 then
  table.insert(out, 1, tostring(now))
  for _, k in ipairs(settled) do
    out[#out + 1] = k
  end
end
return out
