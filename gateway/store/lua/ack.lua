-- Acknowledge lane entries whose messages are all done here. Deleting each
-- entry (XDEL) cost Redis more than anything else in the ack (~6 µs an entry:
-- every id is sought from the start of its stream node); instead the lane is
-- trimmed (XTRIM MINID) up to the oldest entry still in flight, or up to the
-- last one read when none is. An entry in flight for long (retries, a dead
-- consumer) would hold back the trim, so once the oldest in flight is more than
-- TRIM_SPAN_MS (by entry id time) behind the last entry read, acknowledged
-- entries are deleted one by one again. The lane's message count drops by the
-- messages of each entry acknowledged now (not before: XACK says so), and is
-- set to 0 when the lane is found empty, which mends it after anything that
-- wrote lanes without counting (an upgrade).
-- ARGV: per lane: lane key, count, then count × (entry id, messages in the entry).
--#include lib/shard.lua
--#include lib/lane.lua
local i = 1
while i <= #ARGV do
  local lane, n = ARGV[i], tonumber(ARGV[i + 1])
  local ids, done = {}, 0
  for j = i + 2, i + 2 * n, 2 do
    ids[#ids + 1] = ARGV[j]
    if redis.call('XACK', lane, GROUP, ARGV[j]) == 1 then done = done + tonumber(ARGV[j + 1]) end
  end
  i = i + 2 + 2 * n
  if done > 0 then redis.call('HINCRBY', DEPTH, lane, -done) end
  local groups = redis.pcall('XINFO', 'GROUPS', lane)  -- an error if no such lane
  local last
  if not groups.err then
    for _, g in ipairs(groups) do
      if g[2] == GROUP then last = g[8] end
    end
  end
  if last then
    local p = redis.call('XPENDING', lane, GROUP)
    local minid = last
    if p[1] > 0 then
      minid = p[2]
      local held = tonumber(string.match(last, '^%d+')) - tonumber(string.match(minid, '^%d+'))
      if held > TRIM_SPAN_MS then
        for k = 1, #ids, 1000 do
          redis.call('XDEL', lane, unpack(ids, k, math.min(#ids, k + 999)))
        end
      end
    else
      local newest = redis.call('XREVRANGE', lane, '+', '-', 'COUNT', 1)[1]
      if (not newest) or newest[1] == last then redis.call('HSET', DEPTH, lane, 0) end
    end
    redis.call('XTRIM', lane, 'MINID', minid)
  end
end
return 1
