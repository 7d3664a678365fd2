-- lib: core
-- list (read only): ARGV = list name, item kind. Answers the hashes of the items the
-- stream's list names, in list order, each as a flat field/value array.
local out = {}
for _, id in ipairs(redis.call('LRANGE', key(ARGV[1]), 0, -1)) do
  local a = redis.call('HGETALL', key(ARGV[2], id))
  if #a > 0 then
    out[#out + 1] = a
  end
end
return out
