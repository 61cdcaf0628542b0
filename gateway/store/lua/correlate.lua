-- Look up the message part of an SMSC id; if the submit_sm_resp has not been
-- seen yet, park the receipt in the correlation key where corr_write.lua will find
-- it. KEYS: correlation; ARGV: receipt, ttl.
--#include lib/shard.lua
local v = redis.call('GET', KEYS[NK + 1])
if v and string.byte(v) ~= PARKED_BYTE then return v end
redis.call('SET', KEYS[NK + 1], PARKED .. ARGV[1], 'EX', ARGV[2])
return false
