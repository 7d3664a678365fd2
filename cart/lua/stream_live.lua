-- stream_live: ARGV = live ("1" or "0"), now (RFC 3339), session (the publisher's WHIP
-- session; "" for none). The stream hash keeps the session whose arrival is recorded
-- (publisher) and the last one whose leave is (publisher_left), so that the newest
-- intent wins whatever order the writes reach Redis in: a leave of a session that is
-- not the stream's publisher changes nothing (a publisher that came since, on any
-- node, keeps the stream live), nor does the arrival of a session whose leave is
-- already recorded (a write that reached Redis late). A leave also forgets the media
-- origin if it is still the session's. changed: the status was written.
local st = hgetall(key('stream'))
if not st then
  return fail('not_found', 'stream not found')
end
local session = ARGV[3] or ''
if ARGV[1] ~= '1' and session ~= '' and st.origin_session == session then
  redis.call('HDEL', key('stream'), 'origin_node', 'origin_url', 'origin_session', 'origin_seen')
end
if st.status == 'ended' then
  return fail('conflict', 'stream has ended')
end
local publisher = st.publisher or ''
if ARGV[1] == '1' then
  if session ~= '' and st.publisher_left == session then
    return reply({stream = st, changed = false})
  end
  st.status = 'live'
  if (st.started_at or '') == '' then
    st.started_at = ARGV[2]
  end
  st.publisher = session
else
  if session ~= '' then
    redis.call('HSET', key('stream'), 'publisher_left', session)
    st.publisher_left = session
    if publisher ~= '' and publisher ~= session then
      return reply({stream = st, changed = false})
    end
  end
  st.status = 'idle'
  st.publisher = ''
end
redis.call('HSET', key('stream'), 'status', st.status, 'started_at', st.started_at or '', 'publisher', st.publisher)
return reply({stream = st, changed = true})
