-- Lease due receiver queues. ARGV: now, lease until, most queues, token, entries
-- per claim of a single-event queue, then receivers ("<rid>:<account>") to skip
-- (they hold their share of this worker's requests). Returns per queue: name,
-- attempts of its head, entry count, then each entry followed (unless it is
-- rendered) by its message's WH_FIELDS, a count k and the SMSC ids of parts 2
-- to k + 1 (k = 0 unless the message has more than one part: a second HMGET
-- then, in the same script, not a round trip per callback); or, with nothing
-- due, 'next' and the score of the next queue to fall due (if any).
--#include lib/shard.lua
local now, lease, limit, token = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local single = tonumber(ARGV[5])
local skip = {}
for i = 6, #ARGV do skip[ARGV[i]] = true end
local due = redis.call('ZRANGEBYSCORE', WH_DUE, '-inf', now, 'LIMIT', 0,
                       limit + 64 * (#ARGV - 5))
local out, taken = {}, 0
for _, q in ipairs(due) do
  if taken >= limit then break end
  local size, receiver = string.match(q, '^(%d+):%d+:%d+:(.*)$')
  if not skip[receiver] then
    local key = WHQ .. q
    local k = tonumber(size)
    if k == 1 then k = single end
    local entries = redis.call('LRANGE', key, 0, k - 1)
    if #entries == 0 then
      redis.call('ZREM', WH_DUE, q)
    else
      taken = taken + 1
      redis.call('ZADD', WH_DUE, lease, q)
      redis.call('HSET', WH_LEASE, q, token)
      out[#out + 1] = q
      out[#out + 1] = redis.call('HGET', WH_TRY, q) or '0'
      out[#out + 1] = #entries
      for _, e in ipairs(entries) do
        out[#out + 1] = e
        if string.byte(e) ~= WH_RENDERED_BYTE then
          local id = string.match(e, '^([^|]*)')
          local mkey = MSGP .. id
          local f = redis.call('HMGET', mkey, unpack(WH_FIELDS))
          for j = 1, #WH_FIELDS do out[#out + 1] = f[j] end
          local n = tonumber(f[WH_FIELD_AT.n]) or 1
          out[#out + 1] = n > 1 and n - 1 or 0
          if n > 1 then
            local names = {}
            for p = 2, n do names[#names + 1] = 'i' .. p end
            local more = redis.call('HMGET', mkey, unpack(names))
            for j = 1, n - 1 do out[#out + 1] = more[j] end
          end
        end
      end
    end
  end
end
if taken == 0 then
  local first = redis.call('ZRANGE', WH_DUE, 0, 0, 'WITHSCORES')
  return {'next', first[2]}
end
return out
