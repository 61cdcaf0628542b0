-- Take a message out of its lane entry and have it come back at `due`.
-- KEYS: old lane; ARGV: entry id, member (id|hop|lane), due, last ('1' or ''),
-- messages in the entry, message key.
--#include lib/shard.lua
--#include lib/lane.lua
redis.call('ZADD', DELAYED, ARGV[3], ARGV[2])
leave(KEYS[NK + 1], ARGV[1], ARGV[4] == '1', tonumber(ARGV[5]), ARGV[6])
return 1
