-- Assign the stream's next seq, append the frame to its bounded history and publish
-- it, in one atomic step.
-- KEYS[1] seq counter, KEYS[2] history stream
-- ARGV[1] the event type as a JSON string, ARGV[2] the frame after seq (`"ts":..}`),
-- ARGV[3] history length (approximate, never fewer), ARGV[4] channel,
-- ARGV[5] ms to keep both keys from now on (the stream ended; 0 = for ever)
local seq = redis.call('INCR', KEYS[1])
local frame = '{"type":' .. ARGV[1] .. ',"seq":' .. seq .. ',' .. ARGV[2]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'f', frame)
redis.call('PUBLISH', ARGV[4], frame)
if tonumber(ARGV[5]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return {seq, frame}
