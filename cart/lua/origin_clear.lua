-- origin_clear: ARGV = session. Forgets the origin only if it is still this session's.
if redis.call('EXISTS', key('stream')) == 0 then
  return fail('not_found', 'stream not found')
end
if redis.call('HGET', key('stream'), 'origin_session') ~= ARGV[1] then
  return reply({changed = false})
end
redis.call('HDEL', key('stream'), 'origin_node', 'origin_url', 'origin_session', 'origin_seen')
return reply({changed = true})
