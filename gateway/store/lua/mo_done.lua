-- Queue the webhook of a reassembled (or given-up) MO message and replace its
-- parts by a `done` mark that lives as long as they could have (ttl), so a
-- second completion, or a copy of a part the SMSC sends again, does nothing.
-- ARGV: parts key, now, queue key, queue name, entry, ttl, conversation.
--#include lib/shard.lua
--#include lib/wh_push.lua
if redis.call('HEXISTS', ARGV[1], 'done') == 1 or redis.call('DEL', ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', ARGV[1], 'done', '1')
redis.call('EXPIRE', ARGV[1], ARGV[6])
redis.call('ZREM', MO_DUE, ARGV[7])
wh_push(ARGV[3], ARGV[4], ARGV[5], ARGV[2])
return 1
