-- Hand a message to another connector of its route (failover). KEYS: message,
-- old lane, new lane; ARGV: entry id, id, hop, ts, detail, last ('1' or ''),
-- messages in the entry.
--#include lib/shard.lua
--#include lib/status.lua
--#include lib/lane.lua
local key, old, new = KEYS[NK + 1], KEYS[NK + 2], KEYS[NK + 3]
redis.call('XADD', new, '*', 'm', ARGV[2], 'k', ARGV[3])
redis.call('HINCRBY', DEPTH, new, 1)
leave(old, ARGV[1], ARGV[6] == '1', tonumber(ARGV[7]), key)
local v = redis.call('HMGET', key, 's')
if v[1] then
  local out = {}
  note(key, v, ARGV[4], ARGV[5], out)
  redis.call('HSET', key, unpack(out))
end
return 1
