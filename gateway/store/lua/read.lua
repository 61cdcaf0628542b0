-- Read up to ARGV[2] messages for consumer ARGV[1] from the lanes ARGV[3...], in
-- that order (a marketing backlog never delays OTP or transactional traffic).
-- Returns per entry: lane, entry id, m, k.
--#include lib/shard.lua
--#include lib/lane.lua
local consumer, want, got, out = ARGV[1], tonumber(ARGV[2]), 0, {}
for i = 3, #ARGV do
  local lane = ARGV[i]
  while got < want do
    local r = redis.call('XREADGROUP', 'GROUP', GROUP, consumer,
                         'COUNT', math.ceil((want - got) / LANE_GROUP), 'STREAMS', lane, '>')
    if not r then break end
    for _, e in ipairs(r[1][2]) do
      local m, k = fields(e[2])
      local _, commas = string.gsub(m, ',', '')
      got = got + commas + 1
      out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = lane, e[1], m, k
    end
  end
  if got >= want then break end
end
return out
