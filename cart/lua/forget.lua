-- lib: core
-- forget: KEYS[1] = the user's key base; ARGV = n stream ids, then their n "~"
-- records' fields ("~" .. stream id), then the n generations: the streams a plain
-- claim read as emptied by an order (see claimPlain in redis_claim.go). Forgets each
-- stream and its "~" record from the user's cart index unless a hold came there since
-- (it gave the stream a new generation); a "~" record whose stream is gone comes with
-- generation "0" and goes. (prune.lua without the older set form, which is gone when
-- plain claims run: one HMGET, one HDEL.) The usual call forgets every one: one HDEL
-- of the arguments as they came, no table and no string made here.
local n = #ARGV / 3
local gens = redis.call('HMGET', key('gen'), unpack(ARGV, 1, n))
local all = true
for i = 1, n do
  if (gens[i] or '0') ~= ARGV[2 * n + i] then
    all = false
    break
  end
end
if all then
  redis.call('HDEL', key('gen'), unpack(ARGV, 1, 2 * n))
  return 0
end
local drop = {}
for i = 1, n do
  if (gens[i] or '0') == ARGV[2 * n + i] then
    drop[#drop + 1] = ARGV[i]
    drop[#drop + 1] = ARGV[n + i]
  end
end
if #drop > 0 then
  redis.call('HDEL', key('gen'), unpack(drop))
end
return 0
