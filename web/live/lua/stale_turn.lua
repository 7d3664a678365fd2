-- Take this second's turn at comparing one stream's store values with the delivered
-- ones (stock_seen.lua): the first node to ask in a second of Redis's clock gets it,
-- the others skip the comparison (and its store reads) until the next second. A node
-- that dies holding a turn costs nothing: the next second is a new turn.
-- KEYS[1] the stream's last compared second; ARGV[1] ms to keep KEYS[1]
local sec = tonumber(redis.call('TIME')[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if last and last >= sec then
  return 0
end
redis.call('SET', KEYS[1], sec, 'PX', ARGV[1])
return 1
