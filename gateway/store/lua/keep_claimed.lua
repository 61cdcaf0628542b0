-- Reset the idle time of entries this consumer still holds (XCLAIM JUSTID to
-- itself), skipping any another consumer has taken over meanwhile.
-- ARGV: consumer, then per lane: lane, n, n entry ids. Returns the entries touched.
--#include lib/shard.lua
local me, i, touched = ARGV[1], 2, 0
while i <= #ARGV do
  local lane, n = ARGV[i], tonumber(ARGV[i + 1])
  for j = i + 2, i + 1 + n do
    local p = redis.call('XPENDING', lane, GROUP, ARGV[j], ARGV[j], 1)
    if p[1] and p[1][2] == me then
      redis.call('XCLAIM', lane, GROUP, me, 0, ARGV[j], 'JUSTID')
      touched = touched + 1
    end
  end
  i = i + 2 + n
end
return touched
