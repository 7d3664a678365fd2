-- stream_create: ARGV = field, value, ... of the new stream.
if redis.call('EXISTS', key('stream')) == 1 then
  return fail('conflict', 'stream exists')
end
local t = {}
for i = 1, #ARGV, 2 do
  t[ARGV[i]] = ARGV[i + 1]
end
hset(key('stream'), t)
return reply({stream = t})
