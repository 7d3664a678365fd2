-- lib: core
-- list (read only): ARGV = list name, item kind, then ids to leave out. Answers the
-- hashes of the items the stream's list names, in list order, each as a flat
-- field/value array, but those of the ids left out.
local skip = {}
for i = 3, #ARGV do
  skip[ARGV[i]] = true
end
local out = {}
for _, id in ipairs(redis.call('LRANGE', key(ARGV[1]), 0, -1)) do
  if not skip[id] then
    local a = redis.call('HGETALL', key(ARGV[2], id))
    if #a > 0 then
      out[#out + 1] = a
    end
  end
end
return out
