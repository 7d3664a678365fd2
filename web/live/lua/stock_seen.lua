-- Compare the store's current stock values of one stream with the ones last delivered
-- to its viewers (recorded by publish.lua) and return the stock keys whose delivered
-- value differs and has not been published (nor taken over) for ARGV[1] ms: a change
-- whose node died before announcing it (between the store's commit and the gate), or
-- a held-back event lost with its node. The caller publishes the store's value of
-- each through the gate; each returned key is put off by ARGV[1] ms, so that one node
-- at a time does. A key with nothing recorded gets the store's value as its baseline.
-- KEYS[1] the stream's delivered values; ARGV[1] ms, ARGV[2] ms to keep KEYS[1],
-- ARGV[3..] pairs of stock key and the store's value
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = tonumber(ARGV[1])
local out = {}
for i = 3, #ARGV, 2 do
  local k, v = ARGV[i], ARGV[i + 1]
  local rec = redis.call('HGET', KEYS[1], k)
  if not rec then
    redis.call('HSET', KEYS[1], k, v .. ':0')
  else
    local seen, at = string.match(rec, '^(.*):(%d+)$')
    if seen ~= v and now - tonumber(at or '0') >= wait then
      redis.call('HSET', KEYS[1], k, (seen or '') .. ':' .. now)
      out[#out + 1] = k
    end
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return out
