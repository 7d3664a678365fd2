-- hold_remove: ARGV = user id, hold id. Takes the hold out of the user's cart; a
-- live hold's units go back at once.
local h = cart_hold(key('uh', ARGV[1]), ARGV[2], ARGV[1])
if not h then -- the cart's older form
  h = hold_of(ARGV[2])
end
if not h or h.user_id ~= ARGV[1] then
  return fail('not_found', 'hold not found')
end
release_hold(h)
drop_hold(h)
return reply({})
