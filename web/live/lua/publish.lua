-- Assign the stream's next seq, append the frame to its bounded history and publish
-- it, in one atomic step.
-- KEYS[1] seq counter, KEYS[2] history stream
-- ARGV[1] the event type as a JSON string, ARGV[2] the frame after seq (`"ts":..}`),
-- ARGV[3] history length (approximate, never fewer), ARGV[4] channel,
-- ARGV[5] ms to keep both keys from now on (the stream ended; 0 = for ever)
-- A stock value (stock_gate.lua) also passes KEYS[3] its versions hash, KEYS[4] its
-- gate, KEYS[5] the stream's overdue set, ARGV[6] its version, ARGV[7] the interval in
-- ms, ARGV[8] ms to keep KEYS[3], ARGV[9] the stock key: a value older than one already
-- published is dropped (returns {0, ''}), and the gate is held for an interval from
-- now, so publications stay an interval apart. A value covering every counted change
-- is overdue no more.
if KEYS[3] then
  local pub = tonumber(redis.call('HGET', KEYS[3], 'p') or '0')
  if pub >= tonumber(ARGV[6]) then
    return {0, ''}
  end
  redis.call('HSET', KEYS[3], 'p', ARGV[6])
  redis.call('PEXPIRE', KEYS[3], ARGV[8])
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[7])
  if tonumber(ARGV[6]) >= tonumber(redis.call('HGET', KEYS[3], 'v') or '0') then
    redis.call('ZREM', KEYS[5], ARGV[9])
  end
end
local seq = redis.call('INCR', KEYS[1])
local frame = '{"type":' .. ARGV[1] .. ',"seq":' .. seq .. ',' .. ARGV[2]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'f', frame)
redis.call('PUBLISH', ARGV[4], frame)
if tonumber(ARGV[5]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return {seq, frame}
