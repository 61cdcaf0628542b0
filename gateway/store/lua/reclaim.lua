-- Take over entries idle for ARGV[2] ms (their consumer died), at most ARGV[3]
-- entries per lane, for consumer ARGV[1], from the lanes ARGV[4...]. Returns 5
-- values per entry as claimed() appends them.
--#include lib/shard.lua
--#include lib/claimed.lua
local out = {}
for i = 4, #ARGV do
  local lane = ARGV[i]
  local r = redis.call('XAUTOCLAIM', lane, GROUP, ARGV[1], ARGV[2], '0', 'COUNT', ARGV[3])
  for _, e in ipairs(r[2]) do claimed(lane, e, out) end
end
return out
