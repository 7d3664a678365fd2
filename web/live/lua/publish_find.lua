-- Find a publication that ran already: a retry's first step, before it runs
-- publish.lua with the same id. A try whose reply was lost ran the event; the retries
-- after it may reach Redis only much later (the node cut from Redis for minutes),
-- after publish.lua's record of the id (60 s) is gone. The id is then found in the
-- event's history entry (field p), as long as the history holds it.
-- Only entries after ARGV[2] are read (the retry's node knew the stream had reached that
-- seq before the first try was sent: the event, if a try ran, came later), when the
-- history entry at that seq is still the one the node got there (its publication id
-- ARGV[3] in field p). Otherwise Redis lost the stream's keys since (a restart: seqs
-- start again from 1, and once they pass the bound it no longer says where the try's
-- event is) or trimmed that entry (everything left is later anyway): read them all.
-- Without a bound, a retry read the whole history (~1,000 entries, ~4 ms of Redis's time).
-- KEYS[1] the publication's id key, KEYS[2] history stream;
-- ARGV[1] the id, ARGV[2] a seq the stream had reached before the first try (0: none),
-- ARGV[3] the id of the publication that got that seq
-- Returns {seq, frame} ({seq, ''} when only the record is left), or {0, ''}.
local done = redis.call('GET', KEYS[1])
if done then
  local e = redis.call('XRANGE', KEYS[2], done .. '-0', done .. '-0')
  if e[1] then
    return {tonumber(done), e[1][2][2]}
  end
  return {tonumber(done), ''}
end
local from = '-'
local after = tonumber(ARGV[2] or '0')
if after > 0 then
  local e = redis.call('XRANGE', KEYS[2], after .. '-0', after .. '-0')
  local f = e[1] and e[1][2] or {}
  for i = 1, #f - 1, 2 do
    if f[i] == 'p' and f[i + 1] == ARGV[3] then
      from = (after + 1) .. '-0'
    end
  end
end
local all = redis.call('XREVRANGE', KEYS[2], '+', from)
for _, e in ipairs(all) do
  local f = e[2]
  for i = 1, #f - 1, 2 do
    if f[i] == 'p' and f[i + 1] == ARGV[1] then
      return {tonumber(string.match(e[1], '^(%d+)')), f[2]}
    end
  end
end
return {0, ''}
