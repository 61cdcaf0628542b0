-- KEYS: message; ARGV: status, ts, detail, then field/value pairs stored with it.
--#include lib/shard.lua
--#include lib/status.lua
local key = KEYS[NK + 1]
local v = redis.call('HMGET', key, 's', 'b', 'w')
local out = {}
local moved = move(string.sub(key, #MSGP + 1), v, ARGV[1], ARGV[2], ARGV[3], out)
if moved then
  for i = 4, #ARGV do out[#out + 1] = ARGV[i] end
  redis.call('HSET', key, unpack(out))
end
flush()
return moved and 1 or 0
