-- Correlations live in the shard of their SMSC id (a receipt knows nothing
-- else), messages in theirs, so a submit_sm_resp and a receipt each take two
-- script calls: one in the correlation's shard, one in the message's
-- (docs/cluster.md says what a crash between the two does).
--
-- A part was acknowledged by the SMSC, first step: write its correlations, and
-- take the receipts that arrived early (they wait in the correlation key,
-- marked PARKED, and the SET ... GET that writes the correlation returns them:
-- the two cannot miss each other). ARGV: one msgpack array of 3 strings per
-- part: correlation key (of the normalised id), its value
-- "<id>|<part>|<parts in total>|<connector>|<smsc id as written>", ttl. Returns
-- per part what was there before ('' if nothing).
--#include lib/shard.lua
local a, out = cmsgpack.unpack(ARGV[1]), {}
for i = 1, #a, 3 do
  out[#out + 1] = redis.call('SET', a[i], a[i + 1], 'EX', a[i + 2], 'GET') or ''
end
return out
