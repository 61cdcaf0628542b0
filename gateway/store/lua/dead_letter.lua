-- End a message whose retries ran out and keep it in the dead-letter stream.
-- KEYS: message; ARGV: status, ts, error code, connector.
--#include lib/shard.lua
--#include lib/status.lua
local key = KEYS[NK + 1]
local id = string.sub(key, #MSGP + 1)
local v = redis.call('HMGET', key, 's', 'b', 'w')
local out = {}
if not move(id, v, ARGV[1], ARGV[2], ARGV[3], out) then return 0 end
out[#out + 1], out[#out + 2] = 'e', ARGV[3]
redis.call('HSET', key, unpack(out))
flush()
redis.call('XADD', DLQ, '*', 'm', id, 'e', ARGV[3], 'c', ARGV[4], 't', ARGV[2])
return 1
