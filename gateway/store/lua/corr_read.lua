-- Many receipts at once, first step (correlation shard): per receipt, the
-- correlation ("<id>|<part>|…", see corr_write.lua) it belongs to, or '' when it was parked until its
-- submit_sm_resp. ARGV: ttl, and one msgpack array with 2 strings per receipt:
-- correlation key, "state|err|stat".
--#include lib/shard.lua
local ttl, out = ARGV[1], {}
local a = cmsgpack.unpack(ARGV[2])
for i = 1, #a, 2 do
  local v = redis.call('GET', a[i])
  if v and string.byte(v) ~= PARKED_BYTE then
    out[#out + 1] = v
  else
    redis.call('SET', a[i], PARKED .. a[i + 1], 'EX', ttl)
    out[#out + 1] = ''
  end
end
return out
