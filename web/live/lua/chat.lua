-- Check a chat message: the user's mute on the stream first, then the user's rate limit
-- there, shared by every node: a generic cell rate algorithm by Redis's clock (TIME; the
-- nodes' clocks play no part), whose one key holds the theoretical arrival time of the
-- next message. A muted or refused message takes nothing from the limit. The key's
-- expiry is when the limit is full again, so it never outlives burst × interval.
-- KEYS[1] the mute (until, ms); KEYS[2] the limit (µs)
-- ARGV[1] now in ms by the node's clock (a mute is compared with it, as MutedUntil does);
-- ARGV[2] µs per message (1 / rate); ARGV[3] burst
-- Returns {0, until} muted, {1} allowed, {2} too fast.
local m = redis.call('GET', KEYS[1])
if m and tonumber(m) > tonumber(ARGV[1]) then return {0, m} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local per = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if tat < now then tat = now end
tat = tat + per
if tat - now > per * tonumber(ARGV[3]) then return {2} end
redis.call('SET', KEYS[2], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1)
return {1}
