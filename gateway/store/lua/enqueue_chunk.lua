-- Persist one chunk of admitted messages, optionally claiming an idempotency key:
-- the message hash, its lane entry (hop 0; up to LANE_GROUP messages of the
-- chunk for the same lane share one), its expiry and the batch counters.
-- One account and at most one batch per call, so the batch counters move once
-- per chunk and the history text is built once. Expiry entries are per call
-- too: one member per second in which some of the chunk's messages expire (the
-- comma-joined ids, scored by that second rounded up), instead of one ZADD per
-- message and a ZREM when it ends.
-- KEYS[NK + 1]: idempotency key (when ARGV[1] ~= '').
-- ARGV: mode ('' | 'first' | 'next'), token, body hash, response, ttl,
--       batch key or '', batch owner key or '', account, ts, records: one msgpack
--       array of 6 values per message (id, packed record, lane, callback spec or
--       '', expiry time, send_at or '' — a future send_at makes it `scheduled`
--       and it waits in the delayed set instead of its lane). One packed argument
--       instead of several per message: redis-py spent a fifth of a batch's
--       admission time encoding arguments one by one.
-- Returns the number queued, or {hash, response} of an earlier request with this key
-- ('first'), or -1 when a later chunk finds the key owned by another request ('next').
--#include lib/shard.lua
--#include lib/message.lua
--#include lib/lane.lua
local mode = ARGV[1]
if mode == 'first' then
  local seen = redis.call('HMGET', KEYS[NK + 1], 'h', 'r')
  if seen[1] then return seen end
  redis.call('HSET', KEYS[NK + 1], 't', ARGV[2], 'h', ARGV[3], 'r', ARGV[4])
  redis.call('EXPIRE', KEYS[NK + 1], ARGV[5])
elseif mode == 'next' then
  if redis.call('HGET', KEYS[NK + 1], 't') ~= ARGV[2] then return -1 end
end
local b, owner, account, ts = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
if owner ~= '' then redis.call('SET', owner, account) end
-- A queued message's first two lines (accepted, queued, both at ts) are
-- written as the bare ts; readers spell them out (_state_from_hash).
local history = {
  queued = ts,
  scheduled = ts .. '\taccepted\t\n' .. ts .. '\tscheduled\t\n',
}
local recs = cmsgpack.unpack(ARGV[10])
local count = {queued = 0, scheduled = 0}
local expiry, seconds = {}, {}
local lanes, order = {}, {}
-- Append id to groups[key], remembering the order in which keys first appeared.
local function push(groups, keys, key, id)
  local ids = groups[key]
  if not ids then
    ids = {}
    groups[key] = ids
    keys[#keys + 1] = key
  end
  ids[#ids + 1] = id
  return ids
end
for i = 1, #recs, 6 do
  local id, r, lane, cb, due = recs[i], recs[i + 1], recs[i + 2], recs[i + 3], recs[i + 5]
  local status = (due ~= '') and 'scheduled' or 'queued'
  local key = msg(id)
  local h = history[status]
  if cb ~= '' then
    if b ~= '' then
      redis.call('HSET', key, 'r', r, 's', status, 'h', h, 'w', cb, 'b', b)
    else
      redis.call('HSET', key, 'r', r, 's', status, 'h', h, 'w', cb)
    end
    wh_event(id, cb, 'accepted', ts)
    wh_event(id, cb, status, ts)
  elseif b ~= '' then
    redis.call('HSET', key, 'r', r, 's', status, 'h', h, 'b', b)
  else
    redis.call('HSET', key, 'r', r, 's', status, 'h', h)
  end
  if due ~= '' then
    -- send_at in the future: wait outside the lane until due (hop 0)
    redis.call('ZADD', DELAYED, due, id .. '|0|' .. lane)
  else
    local ids = push(lanes, order, lane, id)
    if #ids % LANE_GROUP == 0 then
      redis.call('XADD', lane, '*', 'm', table.concat(ids, ',', #ids - LANE_GROUP + 1))
    end
  end
  push(expiry, seconds, math.ceil(tonumber(recs[i + 4])), id)
  count[status] = count[status] + 1
end
for _, lane in ipairs(order) do
  local ids = lanes[lane]
  local left = #ids % LANE_GROUP
  if left > 0 then redis.call('XADD', lane, '*', 'm', table.concat(ids, ',', #ids - left + 1)) end
  redis.call('HINCRBY', DEPTH, lane, #ids)
end
for _, second in ipairs(seconds) do
  redis.call('ZADD', EXPIRY, second, table.concat(expiry[second], ','))
end
local n = count.queued + count.scheduled
if b ~= '' and n > 0 then
  if count.queued > 0 then redis.call('HINCRBY', b, 'queued', count.queued) end
  if count.scheduled > 0 then redis.call('HINCRBY', b, 'scheduled', count.scheduled) end
  redis.call('HINCRBY', b, 'total', n)
end
return n
