-- stream_live: ARGV = live ("1" or "0"), now (RFC 3339).
local st = hgetall(key('stream'))
if not st then
  return fail('not_found', 'stream not found')
end
if st.status == 'ended' then
  return fail('conflict', 'stream has ended')
end
st.status = 'idle'
if ARGV[1] == '1' then
  st.status = 'live'
  if st.started_at == '' then
    st.started_at = ARGV[2]
  end
end
redis.call('HSET', key('stream'), 'status', st.status, 'started_at', st.started_at)
return reply({stream = st})
