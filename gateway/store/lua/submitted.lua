-- Second step, in the message's shard: store the SMSC id, move the message to
-- `submitted`, and deal with an early receipt: a `delivered` one is applied
-- here; any other is handed back for the receipt rules (it may be resent on a
-- fallback). ARGV: ts, and one msgpack array of 6 strings per part: message
-- id, part, smsc id as the SMSC wrote it (for i<k> and the history),
-- connector, parts in total (as this connector cut the text), what the first
-- step found. Returns per part '' (no early receipt), '=' or '=<new status>'
-- (applied), or the receipt payload.
--#include lib/shard.lua
--#include lib/status.lua
--#include lib/part_final.lua
local ts, out = ARGV[1], {}
local a = cmsgpack.unpack(ARGV[2])
for i = 1, #a, 6 do
  local id, part, smsc_id, conn, early = a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 5]
  local key = msg(id)
  local v = redis.call('HMGET', key, 's', 'b', 'w', 'n')
  if v[1] then
    local w = {'i' .. part, smsc_id, 'c', conn}
    if (v[4] or '1') ~= a[i + 4] then w[5], w[6] = 'n', a[i + 4] end  -- 1 if absent
    move(id, v, 'submitted', ts, conn .. ' ' .. smsc_id, w)
    redis.call('HSET', key, unpack(w))
  end
  if early == '' or string.byte(early) ~= PARKED_BYTE then
    out[#out + 1] = ''
  else
    local payload = string.sub(early, #PARKED + 1)
    local state, err, stat = string.match(payload, '^([^|]*)|([^|]*)|(.*)$')
    if state == 'delivered' then
      out[#out + 1] = '=' .. (part_final(id, part, state, ts, err, stat .. ' err:' .. err) or '')
    else
      out[#out + 1] = payload
    end
  end
end
flush()
return out
