-- origin_set: ARGV = node id, url, session, ttl (µs). Records where the stream is
-- published, seen now by Redis's clock (TIME: the nodes' clocks play no part), unless
-- another node's origin was seen after now - ttl.
local st = redis.call('HMGET', key('stream'), 'status', 'origin_session', 'origin_seen', 'origin_node')
if not st[1] then
  return fail('not_found', 'stream not found')
end
if st[1] == 'ended' then
  return fail('conflict', 'stream has ended')
end
local now = redis_now_us()
if st[2] and st[2] ~= '' and st[4] ~= ARGV[1] and num(st[3]) > num(now) - num(ARGV[4]) then
  return fail('conflict', 'stream is published on node ' .. (st[4] or '?'))
end
redis.call('HSET', key('stream'), 'origin_node', ARGV[1], 'origin_url', ARGV[2], 'origin_session', ARGV[3],
  'origin_seen', now)
return reply({})
