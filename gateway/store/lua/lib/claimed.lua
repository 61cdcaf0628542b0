-- An entry claimed from a consumer that is gone (reclaim or take-over), shared by
-- the two scripts below. Messages that had left the entry before (deferred,
-- rerouted: their `d` is this entry) are not handed out again; an entry with
-- none left is acknowledged. Appends to `out`: lane, entry id, the ids still to
-- look at (joined by commas), k, messages in the entry.
--#include lib/message.lua
--#include lib/lane.lua
local function claimed(lane, e, out)
  if not e then return end  -- false: deleted while pending
  local eid = e[1]
  local m, k = fields(e[2])
  local kept, total = {}, 0
  for id in string.gmatch(m, '[^,]+') do
    total = total + 1
    if redis.call('HGET', msg(id), 'd') ~= eid then kept[#kept + 1] = id end
  end
  if #kept == 0 then
    leave(lane, eid, true, total, '')
  else
    out[#out + 1], out[#out + 2], out[#out + 3] = lane, eid, table.concat(kept, ',')
    out[#out + 1], out[#out + 2] = k, total
  end
end
