-- Expire messages whose validity (plus receipt grace) has passed. An expiry
-- member is the comma-joined ids of messages enqueued by one call whose expiry
-- falls in the same second (a single id is a member of one). Messages that
-- ended meanwhile cost one HGET here instead of a ZREM when they ended.
-- Whole members are taken, one at a time, until `limit` messages were looked
-- at. ARGV: now, limit, ts, retention (seconds after which each message looked
-- at, and its batch's keys, are deleted; 0: not). Returns {1 if more are due
-- else 0, ids expired}.
--#include lib/shard.lua
--#include lib/status.lua
local now, limit, ts, keep = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local expired, seen, batches = {}, 0, {}
while seen < limit do
  local due = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', now, 'LIMIT', 0, 1)
  if #due == 0 then break end
  for id in string.gmatch(due[1], '[^,]+') do
    local key = msg(id)
    local v = redis.call('HMGET', key, 's', 'b', 'w')
    if v[1] and not FINAL[v[1]] then
      local out = {}
      if move(id, v, 'expired', ts, 'validity_elapsed', out) then
        redis.call('HSET', key, unpack(out))
        expired[#expired + 1] = id
      end
    end
    if v[1] and keep > 0 then
      redis.call('EXPIRE', key, keep)
      if v[2] and not batches[v[2]] then  -- its counts, and who owns it
        batches[v[2]] = true
        redis.call('EXPIRE', v[2], keep)
        redis.call('EXPIRE', BOP .. string.sub(v[2], #BATCHP + 1), keep)
      end
    end
    seen = seen + 1
  end
  redis.call('ZREM', EXPIRY, due[1])
end
flush()
local more = #redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', now, 'LIMIT', 0, 1)
return {more, expired}
