-- sale_stop: ARGV = sale id. Ends a scheduled or active sale now.
local s = hgetall(key('s', ARGV[1]))
if not s then
  return fail('not_found', 'sale not found')
end
local changed = end_sale(ARGV[1])
return reply({sale = hgetall(key('s', ARGV[1])), product = hgetall(key('p', s.product_id)), changed = changed})
