-- Take over, for consumer ARGV[1], the entries consumer ARGV[2] holds (it is
-- certainly dead: `gateway.dispatch.takeover`), at most ARGV[3] per lane, from the lanes
-- ARGV[5...], at once instead of after the reclaim's idle time. ARGV[4] is the
-- dead one's identity record (KEYS[NK + 1]) as the caller saw it ('' for none): if
-- another is there now, a new process took the name (a reused pid) and nothing
-- is taken. A record gone meanwhile is fine: another taker finished and deleted
-- it, and a new process records itself before it reads a lane. Never our own
-- name. From a lane where it holds nothing more the dead consumer is deleted
-- (XGROUP DELCONSUMER, which would drop what it still held, is never called
-- before). Returns -1 if refused, else 1 when the dead consumer holds nothing
-- more in these lanes (0: call again), then the entries as reclaim.lua returns them.
--#include lib/shard.lua
--#include lib/claimed.lua
local me, dead, count = ARGV[1], ARGV[2], ARGV[3]
local now = redis.call('GET', KEYS[NK + 1])
if dead == me or (now and now ~= ARGV[4]) then return {-1} end
local out, drained = {1}, 1
for i = 5, #ARGV do
  local lane = ARGV[i]
  local p = redis.call('XPENDING', lane, GROUP, '-', '+', count, dead)
  if #p > 0 then
    local ids = {}
    for j, x in ipairs(p) do ids[j] = x[1] end
    for _, e in ipairs(redis.call('XCLAIM', lane, GROUP, me, 0, unpack(ids))) do
      claimed(lane, e, out)
    end
  end
  if #redis.call('XPENDING', lane, GROUP, '-', '+', 1, dead) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', lane, GROUP, dead)
  else
    drained = 0
  end
end
out[1] = drained
return out
