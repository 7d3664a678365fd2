-- lib: core
-- migrate_holds: KEYS[1] = a user's key base. Moves the older form of the user's cart
-- index, the set holds (no version since 2026-12-01 evening writes it), into the
-- generation hash gen: each of its streams not in gen gets generation "0", which
-- claim.lua, prune.lua and cartStreams read exactly as they read the set's members
-- (a stream in both was read by its gen entry alone). Answers how many it moved.
local moved = 0
for _, sid in ipairs(redis.call('SMEMBERS', key('holds'))) do
  moved = moved + redis.call('HSETNX', key('gen'), sid, '0')
end
redis.call('DEL', key('holds'))
return moved
