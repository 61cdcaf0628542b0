-- The status machine, shared by the scripts below. Every redis.call from Lua
-- costs Redis a few µs more than the command itself (argument conversion, the
-- AOF record), and every field added to a message's (listpack) hash moves the
-- rest of it, so a script reads what it needs of a message with one HMGET whose
-- first three fields are always s, b, w (status, batch key, callbacks wanted)
-- and writes what changed with one HSET. A status line goes into a field of its
-- own, h<rank of the status>: it is written once (statuses only move forward),
-- and the fields' order is the history's. Batch counts are summed over the
-- whole script call and written by flush() at its end: one HINCRBY per batch
-- and status instead of two per message.
--#include lib/message.lua
local counts = {}
local function count(b, status, d)
  local t = counts[b]
  if not t then t = {}; counts[b] = t end
  t[status] = (t[status] or 0) + d
end
local function flush()
  for b, t in pairs(counts) do
    for status, d in pairs(t) do
      if d ~= 0 then redis.call('HINCRBY', b, status, d) end
    end
  end
  counts = {}
end

-- Move a message forward to `new` unless it is missing or final. v is its
-- HMGET (s, b, w, ...), updated in place; the fields to write are appended to
-- out, the caller's one HSET. Returns true if it moved.
local function move(id, v, new, ts, detail, out)
  local cur = v[1]
  if (not cur) or FINAL[cur] or not RANK[new] or RANK[new] <= (RANK[cur] or -1) then
    return false
  end
  v[1] = new
  local o = #out
  out[o + 1], out[o + 2] = 's', new
  out[o + 3], out[o + 4] = HFIELD[new], ts .. '\t' .. new .. '\t' .. detail
  if v[2] then
    count(v[2], cur, -1)
    count(v[2], new, 1)
  end
  if v[3] then wh_event(id, v[3], new, ts) end
  return true
end

-- A history line that changes nothing (failover, resend), appended to out: the
-- j-th such line while the message has status s goes into h<rank of s>.<j>.
local function note(key, v, ts, detail, out)
  local base, j = (HFIELD[v[1]] or 'h99') .. '.', 1
  while redis.call('HEXISTS', key, base .. j) == 1 do j = j + 1 end
  out[#out + 1], out[#out + 2] = base .. j, ts .. '\t' .. v[1] .. '\t' .. detail
end
