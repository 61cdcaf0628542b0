-- Lane entries, shared by the scripts below. An entry's `m` is one message id
-- or several joined by commas; the shard's depth hash (DEPTH) counts each lane's messages
-- (waiting or in flight). A message leaves entry `eid` of `lane`: if it was the
-- last of the entry in flight here (`last`), the entry is acknowledged and the
-- lane's count drops by the entry's `total` messages; otherwise the message is
-- marked (`d` = the entry it left), so a reclaim of the entry after a crash
-- skips it.
--#include lib/shard.lua
local function leave(lane, eid, last, total, key)
  if last then
    if redis.call('XACK', lane, GROUP, eid) == 1 then
      redis.call('HINCRBY', DEPTH, lane, -total)
    end
    redis.call('XDEL', lane, eid)
  else
    redis.call('HSET', key, 'd', eid)
  end
end
local function fields(f)
  local m, k = '', '0'
  for j = 1, #f, 2 do
    if f[j] == 'm' then m = f[j + 1] elseif f[j] == 'k' then k = f[j + 1] end
  end
  return m, k
end
