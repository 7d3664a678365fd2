-- Find a publication that ran already: a retry's first step, before it runs
-- publish.lua with the same id. A try whose reply was lost ran the event; the retries
-- after it may reach Redis only much later (the node cut from Redis for minutes),
-- after publish.lua's record of the id (60 s) is gone. The id is then found in the
-- event's history entry (field p), as long as the history holds it.
-- KEYS[1] the publication's id key, KEYS[2] history stream; ARGV[1] the id
-- Returns {seq, frame} ({seq, ''} when only the record is left), or {0, ''}.
local done = redis.call('GET', KEYS[1])
if done then
  local e = redis.call('XRANGE', KEYS[2], done .. '-0', done .. '-0')
  if e[1] then
    return {tonumber(done), e[1][2][2]}
  end
  return {tonumber(done), ''}
end
local all = redis.call('XREVRANGE', KEYS[2], '+', '-')
for _, e in ipairs(all) do
  local f = e[2]
  for i = 1, #f - 1, 2 do
    if f[i] == 'p' and f[i + 1] == ARGV[1] then
      return {tonumber(string.match(e[1], '^(%d+)')), f[2]}
    end
  end
end
return {0, ''}
