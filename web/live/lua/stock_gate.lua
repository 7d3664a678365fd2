-- One node's turn at publishing a stock value (per sale, or per product's own stock),
-- so that all nodes together publish at most one per interval.
-- KEYS[1] versions hash {v = changes counted, p = highest version published},
-- KEYS[2] the gate (held for an interval by the last taker and the last publisher)
-- ARGV[1] 1 = count this node's new changes, ARGV[2] the version this node still
-- needs published (when not counting), ARGV[3] interval in ms, ARGV[4] ms to keep KEYS[1]
-- Returns {need, 0, 0} when a value read after the change `need` has been published,
-- {need, 1, current} when the caller holds the gate and must read the value now and
-- publish it as version `current`, {need, 2, ms} when the gate is held for ms more.
local need = tonumber(ARGV[2])
if ARGV[1] == '1' then
  need = redis.call('HINCRBY', KEYS[1], 'v', 1)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local pub = tonumber(redis.call('HGET', KEYS[1], 'p') or '0')
if pub >= need then
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
