-- Set a node's viewer count of a stream, standing for a while from Redis's time (not
-- the node's: a node whose clock is ahead would have its count outlive it that much).
-- KEYS[1] hash node → "count:expires_ms"; ARGV[1] node, ARGV[2] count, ARGV[3] ms it
-- stands without a refresh
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. (now + tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
return 1
