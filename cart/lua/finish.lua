-- finish: KEYS[1] = the user's key base; ARGV = key hash, value, ttl ms, then
-- optionally stream id, generation. Remembers a placed order under its idempotency
-- key and, given a stream, forgets it from the cart index as prune.lua does.
redis.call('SET', key('idem', ARGV[1]), ARGV[2], 'PX', ARGV[3])
local sid, gen = ARGV[4], ARGV[5]
if sid and (redis.call('HGET', key('gen'), sid) or '0') == gen then
  redis.call('HDEL', key('gen'), sid)
  redis.call('SREM', key('holds'), sid)
end
return 1
