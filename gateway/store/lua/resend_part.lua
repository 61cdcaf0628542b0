-- Resend one failed part on the next connector, once per part. KEYS: message,
-- next lane; ARGV: part, id, hop, ts, detail. Returns 1 if resent.
--#include lib/shard.lua
--#include lib/status.lua
--#include lib/lane.lua
local key, lane, part = KEYS[NK + 1], KEYS[NK + 2], ARGV[1]
local v = redis.call('HMGET', key, 's', 'p' .. part, 'f' .. part)
if (not v[1]) or FINAL[v[1]] or v[2] or v[3] then return 0 end
local out = {'f' .. part, '1'}
note(key, v, ARGV[4], ARGV[5], out)
redis.call('HSET', key, unpack(out))
redis.call('HDEL', key, 'i' .. part)
redis.call('XADD', lane, '*', 'm', ARGV[2], 'k', ARGV[3])
redis.call('HINCRBY', DEPTH, lane, 1)
return 1
