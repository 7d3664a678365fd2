-- Assign the stream's next seq, append the frame to its bounded history and publish
-- it, in one atomic step, once per publication id.
-- KEYS[1] seq counter, KEYS[2] history stream, KEYS[3] the publication's id key
-- ARGV[1] the event type as a JSON string, ARGV[2] the frame after seq (`"ts":..}`),
-- ARGV[3] history length (approximate, never fewer), ARGV[4] channel,
-- ARGV[5] ms to keep both keys from now on (the stream ended; 0 = for ever)
-- A caller whose reply was lost sends the same id again: the script then answers the
-- seq and frame it gave that id (the frame '' once trimmed from the history) instead
-- of publishing the event a second time. The id is also kept in the event's history
-- entry (field p): a retry first looks it up there (publish_find.lua), for a try that
-- ran more than the record's 60 s before.
-- Stock values the event carries (a sale's remaining, a product's stock) are recorded
-- as delivered, with Redis's time, in KEYS[4], the stream's hash of them (field: the
-- stock key, value "<value>:<ms>"; stock_seen.lua compares them with the store):
-- ARGV[6] ms to keep KEYS[4], ARGV[7] n, then n pairs of stock key and value. A
-- sale's status is recorded the same way (key "sale:<id>", value 1 scheduled, 2
-- active, 3 ended), and a stream's end (key "stream", value 1) too; an event carrying
-- a sale status (or the end) below the recorded one is dropped
-- (returns {0, ''}): a late event never takes a sale back (ended to active). With
-- ARGV[8 + 2n] = 1 (not a stock value) it is dropped unless each sale status it
-- carries is above the recorded one. Whether a product is pinned is recorded the
-- same way (key "pin:<id>", 1 or 0); with ARGV[9 + 2n], a stamp stock_seen.lua
-- returned, the event (a rescued pin or unpin, or product) is dropped unless each pin
-- (or product) key it carries still has the record stamped then: no pin or unpin (no
-- product event) went out since the comparison, none newer than the store's value the
-- rescue read after it (a pin or product key's record always gets a later time than
-- the one it had, even within one ms).
-- An event carrying a pin state or sale status (or the end) already delivered (its
-- record's time is not 0, the baseline's) is dropped: a rescue published it while
-- the event was on its way (a slow node). A pin or unpin dropped so gets a later
-- time all the same, as if it went out.
-- A stock value (stock_gate.lua) also passes KEYS[5] its versions hash, KEYS[6] its
-- gate, KEYS[7] the stream's overdue set, and after the pairs its version, the
-- interval in ms, ms to keep KEYS[5], the stock key: a value older than one already
-- published is dropped (returns {0, ''}), and the gate is held for an interval from
-- now, so publications stay an interval apart. A sale's value other than 0 once its
-- ended event is out (read before the end) is dropped too; with 1 after the stock
-- key (a hidden product's), it is only marked published. A value covering every
-- counted change is overdue no more.
local done = redis.call('GET', KEYS[3])
if done then
  local e = redis.call('XRANGE', KEYS[2], done .. '-0', done .. '-0')
  if e[1] then
    return {tonumber(done), e[1][2][2]}
  end
  return {tonumber(done), ''}
end
local n = tonumber(ARGV[7] or '0')
if KEYS[5] then
  local a = 8 + 2 * n
  local ver = tonumber(ARGV[a])
  local pub = tonumber(redis.call('HGET', KEYS[5], 'p') or '0')
  if pub >= ver then
    return {0, ''}
  end
  redis.call('HSET', KEYS[5], 'p', ARGV[a])
  redis.call('PEXPIRE', KEYS[5], ARGV[a + 2])
  redis.call('SET', KEYS[6], '1', 'PX', ARGV[a + 1])
  if ver >= tonumber(redis.call('HGET', KEYS[5], 'v') or '0') then
    redis.call('ZREM', KEYS[7], ARGV[a + 3])
  end
  -- An ended sale's stock is final (0, carried by its ended event): a value read
  -- before the end is dropped, counted as published.
  local k = ARGV[a + 3]
  if string.sub(k, 1, 14) ~= 'stock:product:' and ARGV[9] ~= '0' then
    local rec = redis.call('HGET', KEYS[4], 'sale:' .. string.sub(k, 7))
    if rec and string.sub(rec, 1, 2) == '3:' then
      return {0, ''}
    end
  end
  if ARGV[a + 4] == '1' then
    return {0, ''} -- marked published, not sent (a hidden product's stock)
  end
end
if n > 0 and not KEYS[5] then
  local strict = ARGV[8 + 2 * n] == '1'
  local stamp = ARGV[9 + 2 * n]
  for i = 0, n - 1 do
    local k = ARGV[8 + 2 * i]
    local pin = string.sub(k, 1, 4) == 'pin:'
    if stamp and string.sub(k, 1, 8) == 'product:' then
      -- A rescued product: dropped if a product event of it went out since the
      -- comparison (it may be newer than the store's product the rescue read).
      local rec = redis.call('HGET', KEYS[4], k)
      if string.match(rec or '', ':(%d+)$') ~= stamp then
        return {0, ''}
      end
    end
    if pin or string.sub(k, 1, 5) == 'sale:' or k == 'stream' then
      local rec = redis.call('HGET', KEYS[4], k)
      local seen, at = string.match(rec or '', '^(%d*):(%d+)$')
      if pin and stamp and at ~= stamp then
        return {0, ''}
      end
      -- A state delivered (at > 0: not a first comparison's baseline) is never sent
      -- again: the rescue of an event still on its way, then the event, is one event.
      local delivered = at ~= nil and at ~= '0'
      seen = tonumber(seen) or 0
      local rank = tonumber(ARGV[9 + 2 * i])
      if pin and delivered and seen == rank then
        -- Touched as if sent: a rescue stamped before must see that it was.
        local t = redis.call('TIME')
        local now = math.max(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), tonumber(at) + 1)
        redis.call('HSET', KEYS[4], k, seen .. ':' .. now)
        return {0, ''}
      end
      if not pin and (seen > rank or (seen == rank and (strict or delivered))) then
        return {0, ''}
      end
    end
  end
end
if n > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for i = 0, n - 1 do
    local k, at = ARGV[8 + 2 * i], now
    if string.sub(k, 1, 4) == 'pin:' or string.sub(k, 1, 8) == 'product:' then
      -- Later than the record's time, a comparison's stamp within this ms included:
      -- a rescue stamped then must see that this went out after.
      local rec = redis.call('HGET', KEYS[4], k)
      local last = rec and tonumber(string.match(rec, ':(%d+)$'))
      if last and last >= at then
        at = last + 1
      end
    end
    redis.call('HSET', KEYS[4], k, ARGV[9 + 2 * i] .. ':' .. at)
  end
  redis.call('PEXPIRE', KEYS[4], ARGV[6])
end
local seq = redis.call('INCR', KEYS[1])
local frame = '{"type":' .. ARGV[1] .. ',"seq":' .. seq .. ',' .. ARGV[2]
-- The id is the key's last part (a uuid: no ':'), whatever the prefix holds.
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'f', frame, 'p', string.match(KEYS[3], ':pub:([^:]+)$'))
redis.call('PUBLISH', ARGV[4], frame)
redis.call('SET', KEYS[3], seq, 'PX', 60000)
if tonumber(ARGV[5]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return {seq, frame}
