-- Assign the stream's next seq, append the frame to its bounded history and publish
-- it, in one atomic step, once per publication id.
-- KEYS[1] seq counter, KEYS[2] history stream, KEYS[3] the publication's id key
-- ARGV[1] the event type as a JSON string, ARGV[2] the frame after seq (`"ts":..}`),
-- ARGV[3] history length (approximate, never fewer), ARGV[4] channel,
-- ARGV[5] ms to keep both keys from now on (the stream ended; 0 = for ever)
-- A caller whose reply was lost sends the same id again: the script then answers the
-- seq and frame it gave that id (the frame '' once trimmed from the history) instead
-- of publishing the event a second time.
-- A stock value (stock_gate.lua) also passes KEYS[4] its versions hash, KEYS[5] its
-- gate, KEYS[6] the stream's overdue set, ARGV[6] its version, ARGV[7] the interval in
-- ms, ARGV[8] ms to keep KEYS[4], ARGV[9] the stock key: a value older than one already
-- published is dropped (returns {0, ''}), and the gate is held for an interval from
-- now, so publications stay an interval apart. A value covering every counted change
-- is overdue no more.
local done = redis.call('GET', KEYS[3])
if done then
  local e = redis.call('XRANGE', KEYS[2], done .. '-0', done .. '-0')
  if e[1] then
    return {tonumber(done), e[1][2][2]}
  end
  return {tonumber(done), ''}
end
if KEYS[4] then
  local pub = tonumber(redis.call('HGET', KEYS[4], 'p') or '0')
  if pub >= tonumber(ARGV[6]) then
    return {0, ''}
  end
  redis.call('HSET', KEYS[4], 'p', ARGV[6])
  redis.call('PEXPIRE', KEYS[4], ARGV[8])
  redis.call('SET', KEYS[5], '1', 'PX', ARGV[7])
  if tonumber(ARGV[6]) >= tonumber(redis.call('HGET', KEYS[4], 'v') or '0') then
    redis.call('ZREM', KEYS[6], ARGV[9])
  end
end
local seq = redis.call('INCR', KEYS[1])
local frame = '{"type":' .. ARGV[1] .. ',"seq":' .. seq .. ',' .. ARGV[2]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'f', frame)
redis.call('PUBLISH', ARGV[4], frame)
redis.call('SET', KEYS[3], seq, 'PX', 60000)
if tonumber(ARGV[5]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return {seq, frame}
