-- prune: KEYS[1] = the user's key base; ARGV = stream id, generation, ... Forgets
-- streams whose part of the user's cart was seen empty, unless a hold was added there
-- since: every hold gives the stream a new generation after its script has run, so a
-- stream is only forgotten if no hold came after the empty cart was read (a hold that
-- races re-adds the stream after this). See claim.lua. A generation's field (the
-- index's newer form, see cartFromIndex in redis_claim.go) comes as itself and "+":
-- it names only the generation read empty, so it goes as it is (a hold since added
-- a field of its own).
for i = 1, #ARGV, 2 do
  local sid, gen = ARGV[i], ARGV[i + 1]
  if gen == '+' then
    redis.call('HDEL', key('gen'), sid)
  elseif (redis.call('HGET', key('gen'), sid) or '0') == gen then
    redis.call('SREM', key('holds'), sid)
    redis.call('HDEL', key('gen'), sid)
  end
end
return reply({})
