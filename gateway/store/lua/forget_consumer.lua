-- Delete a consumer's identity record (KEYS[NK + 1]) if it is still ARGV[1]
-- (not a new process's that took the name meanwhile).
--#include lib/shard.lua
if redis.call('GET', KEYS[NK + 1]) == ARGV[1] then return redis.call('DEL', KEYS[NK + 1]) end
return 0
