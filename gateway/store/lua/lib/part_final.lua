-- A part reached a final state: the message is delivered when every part is;
-- the first failed part decides otherwise. Part 0 stands for every part (a
-- provider that takes the whole text at once). `n` (parts as the connector cut
-- the text) is written when a part is acknowledged; a receipt for a message
-- never acknowledged falls back to the record's count. `sub` (optional: smsc
-- id, connector, parts in total, from the correlation) records the submission
-- first if the message does not know it yet. Returns the new status or false.
--#include lib/status.lua
local function part_final(id, part, state, ts, err, detail, sub)
  local key = msg(id)
  local v = redis.call('HMGET', key, 's', 'b', 'w', 'n', 'p' .. part, 'i' .. part)
  if not v[1] then return false end
  local n = tonumber(v[4])
  local out, others = {}, nil
  if sub and not v[6] then
    -- The receipt came before the message knew of its submission (a crash, or
    -- a race, between the two steps of a submit_sm_resp): record it now.
    out = {'i' .. part, sub[1], 'c', sub[2]}
    if (v[4] or '1') ~= sub[3] then out[5], out[6] = 'n', sub[3] end
    move(id, v, 'submitted', ts, sub[2] .. ' ' .. sub[1], out)
    n = tonumber(sub[3])
  end
  if not n then
    -- `n` is written for more than one part only; a message never acknowledged
    -- has its count in the record
    n = v[6] and 1 or tonumber(cmsgpack.unpack(redis.call('HGET', key, 'r'))[8]) or 1
  end
  if part == '0' then
    local names = {}
    for k = 1, n do names[k] = 'p' .. k end
    others = redis.call('HMGET', key, unpack(names))
    for k = 1, n do
      if not others[k] then
        out[#out + 1], out[#out + 2] = names[k], state
        others[k] = state
      end
    end
  else
    if v[5] then return false end
    out[#out + 1], out[#out + 2] = 'p' .. part, state
  end
  local moved
  if state ~= 'delivered' then
    moved = move(id, v, state, ts, detail, out)
    if moved then out[#out + 1], out[#out + 2] = 'e', err end
  else
    local all = true
    if others then
      for _, s in ipairs(others) do
        if s ~= 'delivered' then all = false end
      end
    elseif n > 1 or part ~= '1' then
      local names = {}
      for k = 1, n do
        if tostring(k) ~= part then names[#names + 1] = 'p' .. k end
      end
      if #names > 0 then
        for _, s in ipairs(redis.call('HMGET', key, unpack(names))) do
          if s ~= 'delivered' then all = false end
        end
      end
    end
    moved = all and move(id, v, 'delivered', ts, detail, out)
  end
  if #out > 0 then redis.call('HSET', key, unpack(out)) end
  return moved and state or false
end
