-- lib: core
-- forget: KEYS[1] = the user's key base; ARGV = stream id, generation, ... : the
-- streams a plain claim read as emptied by an order (see claimPlain in
-- redis_claim.go). Forgets each stream and its "~" record from the user's cart index
-- unless a hold came there since (it gave the stream a new generation); a "~" record
-- whose stream is gone comes with generation "0" and goes. (prune.lua without the
-- older set form, which is gone when plain claims run: one HMGET, one HDEL.)
local n = #ARGV / 2
local sids = {}
for i = 1, n do
  sids[i] = ARGV[2 * i - 1]
end
local gens = redis.call('HMGET', key('gen'), unpack(sids))
local drop = {}
for i = 1, n do
  if (gens[i] or '0') == ARGV[2 * i] then
    drop[#drop + 1] = sids[i]
    drop[#drop + 1] = '~' .. sids[i]
  end
end
if #drop > 0 then
  redis.call('HDEL', key('gen'), unpack(drop))
end
return 0
