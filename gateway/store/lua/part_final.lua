-- KEYS: none; ARGV: message id, part, part state, ts, err, detail.
--#include lib/shard.lua
--#include lib/status.lua
--#include lib/part_final.lua
local new = part_final(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
flush()
return new
