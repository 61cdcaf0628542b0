-- Hand leased queues back. ARGV: now, then 7 per queue: queue key, queue,
-- token, delivered, dead, reason, retry at or ''.
--#include lib/shard.lua
local now = ARGV[1]
for i = 2, #ARGV, 7 do
  local key, q, token = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local delivered, dead = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  if redis.call('HGET', WH_LEASE, q) == token then
    redis.call('HDEL', WH_LEASE, q)
    if delivered > 0 then redis.call('LPOP', key, delivered) end
    if dead > 0 then
      for _, e in ipairs(redis.call('LPOP', key, dead)) do
        redis.call('XADD', WH_DEAD, 'MAXLEN', '~', 100000, '*', 'q', q, 'e', e,
                   'why', ARGV[i + 5])
      end
    end
    if delivered + dead > 0 then redis.call('HDEL', WH_TRY, q) end
    if ARGV[i + 6] ~= '' then
      redis.call('HINCRBY', WH_TRY, q, 1)
      redis.call('ZADD', WH_DUE, ARGV[i + 6], q)
    elseif redis.call('LLEN', key) > 0 then
      redis.call('ZADD', WH_DUE, now, q)
    else
      redis.call('ZREM', WH_DUE, q)
    end
  end
end
return 1
