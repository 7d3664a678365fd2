-- sale_advance: ARGV = now_us, sale id, ... Moves each sale along by time
-- (scheduled → active at StartsAt, → ended at EndsAt) and answers, per sale, whether
-- it changed and the time of its next change ("" when ended or unknown).
local now = num(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local sk = key('s', id)
  local s = hgetall(sk)
  local r = {changed = false, next = ''}
  if s then
    if s.status == 'scheduled' and num(s.starts_us) <= now then
      redis.call('HSET', sk, 'status', 'active')
      s.status = 'active'
      r.changed = true
    end
    if s.status ~= 'ended' and num(s.ends_us) <= now then
      end_sale(id)
      s.status = 'ended'
      r.changed = true
    end
    if r.changed then
      touch_sale(id)
      touch_product(s.product_id)
    end
    if s.status == 'scheduled' then
      r.next = s.starts_us
    elseif s.status == 'active' then
      r.next = s.ends_us
    end
  end
  out[id] = r
end
return reply({advanced = out})
