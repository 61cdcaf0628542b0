-- A message's key, and the status callbacks its status changes queue.
--#include lib/shard.lua
local function msg(id) return MSGP .. id end

-- A status callback, if the message's `w` ("<events mask> <queue>") asks for
-- this status: appended to the receiver queue the message was given at
-- admission. A queue that was empty becomes due after its linger (the second
-- field of its name); one that just filled a batch becomes due now unless a
-- worker holds it (its settle makes it due again).
local function wh_event(id, w, status, ts)
  local mask, q = string.match(w, '^(%d+) (.+)$')
  if not mask or bit.band(tonumber(mask), EVENT_BIT[status] or 0) == 0 then return end
  local n = redis.call('RPUSH', WHQ .. q, id .. '|' .. status .. '|' .. ts)
  local size, linger = string.match(q, '^(%d+):(%d+):')
  if n == 1 then
    redis.call('ZADD', WH_DUE, 'NX', tonumber(ts) + tonumber(linger) / 1000, q)
  elseif n == tonumber(size) and redis.call('HEXISTS', WH_LEASE, q) == 0 then
    redis.call('ZADD', WH_DUE, ts, q)
  end
end
