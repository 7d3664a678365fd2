-- Decide whether a viewers event with this count goes out now: the count changed and
-- none went out within the interval. Records it when so.
-- KEYS[1] hash {count, at}; ARGV[1] count, ARGV[2] now ms, ARGV[3] interval ms
local last = redis.call('HGET', KEYS[1], 'count')
local at = redis.call('HGET', KEYS[1], 'at')
if last == ARGV[1] then return 0 end
if not last and ARGV[1] == '0' then return 0 end
if at and tonumber(ARGV[2]) - tonumber(at) < tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'count', ARGV[1], 'at', ARGV[2])
redis.call('PEXPIRE', KEYS[1], 3600000)
return 1
