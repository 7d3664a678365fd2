-- stream_end: ARGV = now (RFC 3339), now_us. Ends the stream and its scheduled and
-- active sales (they end now); "ended" lists the sales it ended.
local st = hgetall(key('stream'))
if not st then
  return fail('not_found', 'stream not found')
end
if st.status == 'ended' then
  return reply({stream = st, ended = ''})
end
st.status = 'ended'
st.ended_at = ARGV[1]
redis.call('HSET', key('stream'), 'status', 'ended', 'ended_at', ARGV[1])
local ended = {}
for _, id in ipairs(redis.call('LRANGE', key('sales'), 0, -1)) do
  if end_sale(id, ARGV[2], ARGV[1]) then
    ended[#ended + 1] = id
  end
end
return reply({stream = st, ended = table.concat(ended, ',')})
