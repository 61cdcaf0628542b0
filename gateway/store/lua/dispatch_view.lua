-- ARGV: message ids. Returns per message: status, packed record, and the
-- acknowledged part numbers joined by commas ('' if none; false, false, '' if
-- the message does not exist). One HMGET covers a message of one part.
--#include lib/shard.lua
--#include lib/message.lua
local out = {}
for _, id in ipairs(ARGV) do
  local key = msg(id)
  local v = redis.call('HMGET', key, 's', 'r', 'n', 'i0', 'i1')
  local acked = {}
  if v[1] then
    if v[4] then acked[#acked + 1] = 0 end
    if v[5] then acked[#acked + 1] = 1 end
    local n = tonumber(v[3]) or 1
    if n > 1 then
      local names = {}
      for k = 2, n do names[#names + 1] = 'i' .. k end
      local more = redis.call('HMGET', key, unpack(names))
      for j = 1, #names do
        if more[j] then acked[#acked + 1] = j + 1 end
      end
    end
  end
  out[#out + 1] = v[1] or false
  out[#out + 1] = v[2] or false
  out[#out + 1] = table.concat(acked, ',')
end
return out
