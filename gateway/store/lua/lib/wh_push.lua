-- Append a rendered entry to a webhook queue and make the queue due (if it was not).
--#include lib/shard.lua
local function wh_push(queue_key, queue, entry, now)
  redis.call('RPUSH', queue_key, entry)
  redis.call('ZADD', WH_DUE, 'NX', now, queue)
end
