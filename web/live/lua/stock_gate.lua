-- One node's turn at publishing a stock value (per sale, or per product's own stock),
-- so that all nodes together publish at most one per interval.
-- KEYS[1] versions hash {v = changes counted, p = highest version published},
-- KEYS[2] the gate (held for an interval by the last taker and the last publisher),
-- KEYS[3] the stream's overdue set (stock keys with changes counted and not yet
-- published, scored by when another node should publish them: stock_due.lua)
-- ARGV[1] 1 = count this node's new changes, ARGV[2] the version this node still
-- needs published (when not counting; -1: every change counted so far),
-- ARGV[3] interval in ms, ARGV[4] ms to keep KEYS[1] and KEYS[3], ARGV[5] ms after a
-- change at which another node publishes it if nobody has, ARGV[6] the stock key
-- Returns {need, 0, 0} when a value read after the change `need` has been published,
-- {need, 1, current} when the caller holds the gate and must read the value now and
-- publish it as version `current`, {need, 2, ms} when the gate is held for ms more.
local need = tonumber(ARGV[2])
if ARGV[1] == '1' then
  need = redis.call('HINCRBY', KEYS[1], 'v', 1)
  -- Should this node die before a value read after the change is out, another node
  -- publishes one once this moment is past.
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[6])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
elseif need < 0 then
  need = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local pub = tonumber(redis.call('HGET', KEYS[1], 'p') or '0')
if pub >= need then
  if pub >= tonumber(redis.call('HGET', KEYS[1], 'v') or '0') then
    redis.call('ZREM', KEYS[3], ARGV[6])
  end
  return {need, 0, 0}
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then
  local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
  if cur < need then
    -- Counts were lost (Redis came back without its last writes, or KEYS[1] went):
    -- the version must still cover this node's changes, or it would be dropped as
    -- already published.
    redis.call('HSET', KEYS[1], 'v', need)
    cur = need
  end
  return {need, 1, cur}
end
local ttl = redis.call('PTTL', KEYS[2])
if ttl < 1 then ttl = 1 end
return {need, 2, ttl}
