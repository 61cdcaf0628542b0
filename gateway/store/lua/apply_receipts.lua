-- Second step (message shard): apply the receipts. ARGV: ts, and one msgpack
-- array of 6 strings per receipt: message id, part, "state|err|stat", and from
-- the correlation the parts in total, connector and smsc id (to record the
-- submission if the message does not know it yet). Returns per receipt the
-- message's new status or ''.
--#include lib/shard.lua
--#include lib/status.lua
--#include lib/part_final.lua
local ts, out, parsed = ARGV[1], {}, {}
local a = cmsgpack.unpack(ARGV[2])
for i = 1, #a, 6 do
  local p = parsed[a[i + 2]]  -- most receipts of a call read the same
  if not p then
    local state, err, stat = string.match(a[i + 2], '^([^|]*)|([^|]*)|(.*)$')
    p = {state, err, stat .. ' err:' .. err}
    parsed[a[i + 2]] = p
  end
  out[#out + 1] = part_final(a[i], a[i + 1], p[1], ts, p[2], p[3],
                             {a[i + 5], a[i + 4], a[i + 3]}) or ''
end
flush()
return out
