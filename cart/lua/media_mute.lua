-- media_mute: ARGV = audio, video ("1" muted, "0" unmuted, "" unchanged).
if redis.call('EXISTS', key('stream')) == 0 then
  return fail('not_found', 'stream not found')
end
if redis.call('HGET', key('stream'), 'status') == 'ended' then
  return fail('conflict', 'stream has ended')
end
if ARGV[1] ~= '' then
  redis.call('HSET', key('stream'), 'audio_muted', ARGV[1])
end
if ARGV[2] ~= '' then
  redis.call('HSET', key('stream'), 'video_muted', ARGV[2])
end
local m = redis.call('HMGET', key('stream'), 'audio_muted', 'video_muted')
return reply({stream = {audio_muted = m[1] or '0', video_muted = m[2] or '0'}})
