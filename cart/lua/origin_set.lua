-- origin_set: ARGV = node id, url, session. Records where the stream is published.
local status = redis.call('HGET', key('stream'), 'status')
if not status then
  return fail('not_found', 'stream not found')
end
if status == 'ended' then
  return fail('conflict', 'stream has ended')
end
redis.call('HSET', key('stream'), 'origin_node', ARGV[1], 'origin_url', ARGV[2], 'origin_session', ARGV[3])
return reply({})
