-- origin_set: ARGV = node id, url, session, now (µs), ttl (µs). Records where the
-- stream is published, seen now, unless another node's origin was seen after
-- now - ttl.
local st = redis.call('HMGET', key('stream'), 'status', 'origin_session', 'origin_seen', 'origin_node')
if not st[1] then
  return fail('not_found', 'stream not found')
end
if st[1] == 'ended' then
  return fail('conflict', 'stream has ended')
end
if st[2] and st[2] ~= '' and st[4] ~= ARGV[1] and num(st[3]) > num(ARGV[4]) - num(ARGV[5]) then
  return fail('conflict', 'stream is published on node ' .. (st[4] or '?'))
end
redis.call('HSET', key('stream'), 'origin_node', ARGV[1], 'origin_url', ARGV[2], 'origin_session', ARGV[3],
  'origin_seen', ARGV[4])
return reply({})
