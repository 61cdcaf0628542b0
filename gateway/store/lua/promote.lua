-- Move due deferrals back into their lanes; a scheduled message that comes due
-- moves to `queued`. ARGV: now, limit, ts. Returns the members moved.
--#include lib/shard.lua
--#include lib/status.lua
--#include lib/lane.lua
local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local id, hop, lane = string.match(member, '^([^|]+)|([^|]+)|(.+)$')
  local key = msg(id)
  local v = redis.call('HMGET', key, 's', 'b', 'w')
  if v[1] == 'scheduled' then
    local out = {}
    move(id, v, 'queued', ARGV[3], 'send_at reached', out)
    redis.call('HSET', key, unpack(out))
  end
  redis.call('XADD', lane, '*', 'm', id, 'k', hop)
  redis.call('HINCRBY', DEPTH, lane, 1)
  redis.call('ZREM', DELAYED, member)
end
flush()
return #due
