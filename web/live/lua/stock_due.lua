-- The stock keys of one stream whose counted changes are overdue: no value read after
-- them was published by the moment stock_gate.lua set (the node that counted them
-- died, or stalled). The caller takes over publishing them; each returned key is
-- put off by ARGV[1] ms, so that one node at a time does.
-- KEYS[1] the stream's overdue set; ARGV[1] ms, ARGV[2] at most this many keys
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, k in ipairs(due) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), k)
end
return due
