-- Store one part of an MO message; once every part is in, return them all (the
-- parts stay until mo_done.lua queues the whole message, so a crash in between
-- loses nothing: the SMSC resends the part we did not acknowledge).
-- ARGV: parts key, part number, text, parts in total, due (give-up time), ttl,
-- conversation (MO_DUE's member).
--#include lib/shard.lua
local key = ARGV[1]
if redis.call('HEXISTS', key, 'done') == 1 then return false end  -- a copy, once sent
if redis.call('HSETNX', key, ARGV[2], ARGV[3]) == 1 and redis.call('HLEN', key) == 1 then
  redis.call('ZADD', MO_DUE, ARGV[5], ARGV[7])
  redis.call('EXPIRE', key, ARGV[6])
end
if redis.call('HLEN', key) >= tonumber(ARGV[4]) then return redis.call('HGETALL', key) end
return false
