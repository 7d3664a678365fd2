-- lib: core
-- list (read only): ARGV = list name, item kind, then ids to leave out. Answers the
-- hashes of the items the stream's list names, in list order, each as a flat
-- field/value array, but those of the ids left out.
-- Orders (kind "o", see checkout.lua): the stream's list names a newer order as
-- "<oid> <uid>", its record in the user's orders uo:<uid>; a user's orders (list
-- name uo:<uid>) are that hash (its order fields; "k:" fields are key records) or,
-- in the older form, a list of order ids. Each order answers {"d", record, "id", its
-- id, "user_id", its user} (the record's newer form leaves them out: see
-- place_order in checkout.lua).
local skip = {}
for i = 3, #ARGV do
  skip[ARGV[i]] = true
end
local lk, kind, out = key(ARGV[1]), ARGV[2], {}
if kind == 'o' and redis.call('TYPE', lk).ok == 'hash' then
  local a = redis.call('HGETALL', lk)
  local uid = string.sub(ARGV[1], 4) -- (uo:<uid>)
  for i = 1, #a, 2 do
    if string.sub(a[i], 1, 2) ~= 'k:' and not skip[a[i]] then
      out[#out + 1] = {'d', a[i + 1], 'id', a[i], 'user_id', uid}
    end
  end
  return out
end
for _, id in ipairs(redis.call('LRANGE', lk, 0, -1)) do
  local oid, uid
  if kind == 'o' then
    oid, uid = string.match(id, '^([^ ]*) (.*)$')
  end
  if oid then
    if not skip[oid] then
      local d = redis.call('HGET', key('uo', uid), oid)
      if d then
        out[#out + 1] = {'d', d, 'id', oid, 'user_id', uid}
      end
    end
  elseif not skip[id] then
    local a = redis.call('HGETALL', key(kind, id))
    if #a > 0 then
      if kind == 'o' then
        a[#a + 1], a[#a + 2] = 'id', id
      end
      out[#out + 1] = a
    end
  end
end
return out
