-- sale_stop: ARGV = sale id, now (RFC 3339), now_us. Ends a scheduled or active sale now.
local s = hgetall(key('s', ARGV[1]))
if not s then
  return fail('not_found', 'sale not found')
end
local changed = end_sale(ARGV[1], ARGV[3], ARGV[2])
return reply({sale = hgetall(key('s', ARGV[1])), product = hgetall(key('p', s.product_id)), changed = changed})
