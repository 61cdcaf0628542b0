--#include lib/shard.lua
--#include lib/wh_push.lua
wh_push(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
