-- origin_renew: ARGV = session. Sets origin_seen to now by Redis's clock (TIME) if the
-- origin is still this session's; never records one that is not there.
local st = redis.call('HMGET', key('stream'), 'status', 'origin_session')
if not st[1] then
  return fail('not_found', 'stream not found')
end
if st[1] == 'ended' then
  return fail('conflict', 'stream has ended')
end
if not st[2] or st[2] == '' or st[2] ~= ARGV[1] then
  return reply({changed = false})
end
redis.call('HSET', key('stream'), 'origin_seen', redis_now_us())
return reply({changed = true})
