-- Assign the stream's next seq, append the frame to its bounded history and publish
-- it, in one atomic step.
-- KEYS[1] seq counter, KEYS[2] history stream
-- ARGV[1] the event type as a JSON string, ARGV[2] the frame after seq (`"ts":..}`),
-- ARGV[3] history length (approximate, never fewer), ARGV[4] channel
local seq = redis.call('INCR', KEYS[1])
local frame = '{"type":' .. ARGV[1] .. ',"seq":' .. seq .. ',' .. ARGV[2]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'f', frame)
redis.call('PUBLISH', ARGV[4], frame)
return {seq, frame}
