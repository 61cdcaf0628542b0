"""Everything the gateway keeps in Redis: the scripts that update it and the
methods every other stage calls (none builds a key itself: the layout is
`gateway.store.keys`).

Redis work per message is what limits throughput (loadtest/bench_store.py
measures it per stage), so the scripts read a message with one HMGET and write
it with one HSET, and what can be per call is: batch counts, expiry entries,
lane entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import NamedTuple, TypeVar

import msgpack
import orjson
import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    RedisClusterUnreachableError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError as RedisError  # for callers: any failure of the store
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.core.model import (
    ACCEPTED,
    EVENT_BITS,
    FINAL_STATUSES,
    QUEUED,
    SCHEDULED,
    SUBMITTED,
    Message,
    MessageState,
    use_shards,
)
from gateway.core.model import CLASSES as LANES  # the lanes, read in this order: OTP first
from gateway.store.client import connect
from gateway.store.keys import (
    AUTH_BLOCKED,
    CONN_PREFIX,
    GROUP,
    SHARD_KEY_NAMES,
    authfail_key,
    batch_key,
    batch_owner_key,
    conn_key,
    consumer_key,
    conversation_shard,
    corr_key,
    corr_shard,
    delayed_key,
    depth_key,
    dlq_key,
    key_shard,
    lane_key,
    metrics_key,
    mo_due_key,
    mo_parts_key,
    msg_key,
    optout_key,
    rate_key,
    shard_keys,
    shard_of,
    wh_dead_key,
    wh_due_key,
    wh_queue_key,
)

# Errors that mean "Redis is away" (killed, restarting, loading, network):
# waiting and trying again is the cure. The built-in ConnectionError and
# TimeoutError are OSErrors.
REDIS_AWAY = (RedisConnectionError, RedisTimeoutError, OSError, ClusterDownError,
              RedisClusterUnreachableError)


@contextlib.contextmanager
def probe(host: str, port: int, connect_timeout: float) -> Iterator[Callable[[], bool]]:
    """A check, to call as often as needed, that the Redis server at host:port
    answers: False while it is not listening yet or still loading its data (it
    answers LOADING then)."""
    client = redis.Redis(host=host, port=port, socket_connect_timeout=connect_timeout)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
            return False

    try:
        yield answers
    finally:
        client.close()



T = TypeVar("T")

# A worker's identity record lives this long unless its housekeeper renews it.
CONSUMER_TTL = 24 * 3600


# Messages of one enqueue call that share a lane share a lane entry, up to this
# many: a stream entry costs Redis about as much to add, read (XREADGROUP
# propagates an XCLAIM per entry to the AOF) and acknowledge as all the rest of
# a message's admission.
LANE_GROUP = 32
# How far (ms of entry id time) the oldest lane entry in flight may lag the last
# one read before acknowledged entries are deleted one by one (see _ACK).
TRIM_SPAN_MS = 2000
# A status's place in the life cycle. Statuses only move forward, so a status
# line's field, h<rank>, is written once and also says where the line goes in
# the history. Stored in field names: never renumber (a message has one final
# status, so they share a rank).
HISTORY_RANK = {ACCEPTED: 0, SCHEDULED: 1, QUEUED: 2, SUBMITTED: 3,
                **dict.fromkeys(sorted(FINAL_STATUSES), 4)}
# Marks a receipt parked in a correlation key until its submit_sm_resp is seen
# (a correlation itself is "<id>|<part>", and ids never start with it).
PARKED = "~"

# Every shard script starts with this: KEYS[1..NK] are keys.shard_keys(k) of
# the shard it runs in (prefixes of the keys it builds from ids and names, and
# the shard's own keys); the script's own keys come after, from KEYS[NK + 1].
NK = len(SHARD_KEY_NAMES)
SHARD_LUA = (
    "local " + ", ".join(("MSGP", "DEPTH", "EXPIRY", "DELAYED", "DLQ", "WH_DUE", "WH_LEASE",
                          "WH_TRY", "WH_DEAD", "WHQ", "BATCHP", "BOP", "MO_DUE"))
    + f" = unpack(KEYS, 1, {NK})\nlocal NK = {NK}\n"
)
_FINAL_LUA = (
    "local FINAL = {" + ", ".join(f"{s}=true" for s in sorted(FINAL_STATUSES)) + "}\n"
    + f"local PARKED, PARKED_BYTE = '{PARKED}', {ord(PARKED)}\n"
    + "local RANK = {" + ", ".join(f"{st}={r}" for st, r in HISTORY_RANK.items()) + "}\n"
    + "local HFIELD = {" + ", ".join(f"{st}='h{r}'" for st, r in HISTORY_RANK.items())
    + "}\n"
    + """
local function msg(id) return MSGP .. id end
"""
    + "local EVENT_BIT = {" + ", ".join(f"{st}={b}" for st, b in EVENT_BITS.items()) + "}\n"
    + """
-- A status callback, if the message's `w` ("<events mask> <queue>") asks for
-- this status: appended to the receiver queue the message was given at
-- admission. A queue that was empty becomes due after its linger (the second
-- field of its name); one that just filled a batch becomes due now unless a
-- worker holds it (its settle makes it due again).
local function wh_event(id, w, status, ts)
  local mask, q = string.match(w, '^(%d+) (.+)$')
  if not mask or bit.band(tonumber(mask), EVENT_BIT[status] or 0) == 0 then return end
  local n = redis.call('RPUSH', WHQ .. q, id .. '|' .. status .. '|' .. ts)
  local size, linger = string.match(q, '^(%d+):(%d+):')
  if n == 1 then
    redis.call('ZADD', WH_DUE, 'NX', tonumber(ts) + tonumber(linger) / 1000, q)
  elseif n == tonumber(size) and redis.call('HEXISTS', WH_LEASE, q) == 0 then
    redis.call('ZADD', WH_DUE, ts, q)
  end
end
"""
)

# Lane entries, shared by the scripts below. An entry's `m` is one message id
# or several joined by commas; `smsgw:depth` counts each lane's messages
# (waiting or in flight). A message leaves entry `eid` of `lane`: if it was the
# last of the entry in flight here (`last`), the entry is acknowledged and the
# lane's count drops by the entry's `total` messages; otherwise the message is
# marked (`d` = the entry it left), so a reclaim of the entry after a crash
# skips it.
_LANE_LUA = f"""
local GROUP, LANE_GROUP = '{GROUP}', {LANE_GROUP}
local function leave(lane, eid, last, total, key)
  if last then
    if redis.call('XACK', lane, GROUP, eid) == 1 then
      redis.call('HINCRBY', DEPTH, lane, -total)
    end
    redis.call('XDEL', lane, eid)
  else
    redis.call('HSET', key, 'd', eid)
  end
end
local function fields(f)
  local m, k = '', '0'
  for j = 1, #f, 2 do
    if f[j] == 'm' then m = f[j + 1] elseif f[j] == 'k' then k = f[j + 1] end
  end
  return m, k
end
"""

# The status machine, shared by the scripts below. Every redis.call from Lua
# costs Redis a few µs more than the command itself (argument conversion, the
# AOF record), and every field added to a message's (listpack) hash moves the
# rest of it, so a script reads what it needs of a message with one HMGET whose
# first three fields are always s, b, w (status, batch key, callbacks wanted)
# and writes what changed with one HSET. A status line goes into a field of its
# own, h<rank of the status>: it is written once (statuses only move forward),
# and the fields' order is the history's. Batch counts are summed over the
# whole script call and written by flush() at its end: one HINCRBY per batch
# and status instead of two per message.
_STATUS_LUA = (
    _FINAL_LUA
    + """
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
  out[o + 3], out[o + 4] = HFIELD[new], ts .. '\\t' .. new .. '\\t' .. detail
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
  out[#out + 1], out[#out + 2] = base .. j, ts .. '\\t' .. v[1] .. '\\t' .. detail
end
"""
)

# KEYS: message; ARGV: status, ts, detail, then field/value pairs stored with it.
_SET_STATUS = (
    _STATUS_LUA
    + f"local key = KEYS[{NK + 1}]\n"
    + """
local v = redis.call('HMGET', key, 's', 'b', 'w')
local out = {}
local moved = move(string.sub(key, #MSGP + 1), v, ARGV[1], ARGV[2], ARGV[3], out)
if moved then
  for i = 4, #ARGV do out[#out + 1] = ARGV[i] end
  redis.call('HSET', key, unpack(out))
end
flush()
return moved and 1 or 0
"""
)

# A part reached a final state: the message is delivered when every part is;
# the first failed part decides otherwise. Part 0 stands for every part (a
# provider that takes the whole text at once). `n` (parts as the connector cut
# the text) is written when a part is acknowledged; a receipt for a message
# never acknowledged falls back to the record's count. Returns the new status
# or false.
_PART_FINAL_FN = """
local function part_final(id, part, state, ts, err, detail, sub)
  local key = msg(id)
  local v = redis.call('HMGET', key, 's', 'b', 'w', 'n', 'p' .. part, 'i' .. part)
  if not v[1] then return false end
  local n = tonumber(v[4])
  local out, others = {}, nil
  if sub and not v[6] then
    -- The receipt came before the message knew of its submission (a crash, or
    -- a race, between the two steps of a submit_sm_resp): `sub` (smsc id,
    -- connector, parts in total) from the correlation records it now.
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
"""

# Correlations live in the shard of their SMSC id (a receipt knows nothing
# else), messages in theirs, so a submit_sm_resp and a receipt each take two
# script calls: one in the correlation's shard, one in the message's
# (docs/cluster.md says what a crash between the two does).
#
# A part was acknowledged by the SMSC, first step: write its correlations, and
# take the receipts that arrived early (they wait in the correlation key,
# marked PARKED, and the SET ... GET that writes the correlation returns them:
# the two cannot miss each other). ARGV: one msgpack array of 3 strings per
# part: correlation key (of the normalised id), its value
# "<id>|<part>|<parts in total>|<connector>|<smsc id as written>", ttl. Returns
# per part what was there before ('' if nothing).
_CORR_WRITE = """
local a, out = cmsgpack.unpack(ARGV[1]), {}
for i = 1, #a, 3 do
  out[#out + 1] = redis.call('SET', a[i], a[i + 1], 'EX', a[i + 2], 'GET') or ''
end
return out
"""

# Second step, in the message's shard: store the SMSC id, move the message to
# `submitted`, and deal with an early receipt: a `delivered` one is applied
# here; any other is handed back for the receipt rules (it may be resent on a
# fallback). ARGV: ts, and one msgpack array of 6 strings per part: message
# id, part, smsc id as the SMSC wrote it (for i<k> and the history),
# connector, parts in total (as this connector cut the text), what the first
# step found. Returns per part '' (no early receipt), '=' or '=<new status>'
# (applied), or the receipt payload.
_SUBMITTED = (
    _STATUS_LUA
    + _PART_FINAL_FN
    + """
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
"""
)

# KEYS: none; ARGV: message id, part, part state, ts, err, detail.
_PART_FINAL = (
    _STATUS_LUA
    + _PART_FINAL_FN
    + """
local new = part_final(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
flush()
return new
"""
)

# Look up the message part of an SMSC id; if the submit_sm_resp has not been
# seen yet, park the receipt in the correlation key where _CORR_WRITE will find
# it. KEYS: correlation; ARGV: receipt, ttl.
_CORRELATE = f"""
local v = redis.call('GET', KEYS[{NK + 1}])
if v and string.byte(v) ~= {ord(PARKED)} then return v end
redis.call('SET', KEYS[{NK + 1}], '{PARKED}' .. ARGV[1], 'EX', ARGV[2])
return false
"""

# Many receipts at once, first step (correlation shard): per receipt, the
# correlation ("<id>|<part>|…", see _CORR_WRITE) it belongs to, or '' when it was parked until its
# submit_sm_resp. ARGV: ttl, and one msgpack array with 2 strings per receipt:
# correlation key, "state|err|stat".
_CORR_READ = _FINAL_LUA + """
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
"""

# Second step (message shard): apply the receipts. ARGV: ts, and one msgpack
# array of 6 strings per receipt: message id, part, "state|err|stat", and from
# the correlation the parts in total, connector and smsc id (to record the
# submission if the message does not know it yet). Returns per receipt the
# message's new status or ''.
_APPLY_RECEIPTS = (
    _STATUS_LUA
    + _PART_FINAL_FN
    + """
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
"""
)


# ARGV: message ids. Returns per message: status, packed record, and the
# acknowledged part numbers joined by commas ('' if none; false, false, '' if
# the message does not exist). One HMGET covers a message of one part.
_DISPATCH_VIEW = (
    _FINAL_LUA
    + """
local out = {}
for _, id in ipairs(ARGV) do
  local key = msg(id)
  local v = redis.call('HMGET', key, 's', 'r', 'n', 'i0', 'i1')
  local acked = {}
  if v[1] then
    if v[4] then acked[#acked + 1] = 0 end
    if v[5] then acked[#acked + 1] = 1 end
    local n = tonumber(v[3]) or 1
    if n > 1 then
      local names = {}
      for k = 2, n do names[#names + 1] = 'i' .. k end
      local more = redis.call('HMGET', key, unpack(names))
      for j = 1, #names do
        if more[j] then acked[#acked + 1] = j + 1 end
      end
    end
  end
  out[#out + 1] = v[1] or false
  out[#out + 1] = v[2] or false
  out[#out + 1] = table.concat(acked, ',')
end
return out
"""
)

# Hand a message to another connector of its route (failover). KEYS: message,
# old lane, new lane; ARGV: entry id, id, hop, ts, detail, last ('1' or ''),
# messages in the entry.
_REROUTE = (
    _STATUS_LUA
    + _LANE_LUA
    + """
local key, old, new = KEYS[NK + 1], KEYS[NK + 2], KEYS[NK + 3]
redis.call('XADD', new, '*', 'm', ARGV[2], 'k', ARGV[3])
redis.call('HINCRBY', DEPTH, new, 1)
leave(old, ARGV[1], ARGV[6] == '1', tonumber(ARGV[7]), key)
local v = redis.call('HMGET', key, 's')
if v[1] then
  local out = {}
  note(key, v, ARGV[4], ARGV[5], out)
  redis.call('HSET', key, unpack(out))
end
return 1
"""
)

# Acknowledge lane entries whose messages are all done here. Deleting each
# entry (XDEL) cost Redis more than anything else in the ack (~6 µs an entry:
# every id is sought from the start of its stream node); instead the lane is
# trimmed (XTRIM MINID) up to the oldest entry still in flight, or up to the
# last one read when none is. An entry in flight for long (retries, a dead
# consumer) would hold back the trim, so once the oldest in flight is more than
# TRIM_SPAN_MS (by entry id time) behind the last entry read, acknowledged
# entries are deleted one by one again. The lane's message count drops by the
# messages of each entry acknowledged now (not before: XACK says so), and is
# set to 0 when the lane is found empty, which mends it after anything that
# wrote lanes without counting (an upgrade).
# ARGV: per lane: lane key, count, then count × (entry id, messages in the entry).
_ACK = (
    _LANE_LUA
    + f"""
local i = 1
while i <= #ARGV do
  local lane, n = ARGV[i], tonumber(ARGV[i + 1])
  local ids, done = {{}}, 0
  for j = i + 2, i + 2 * n, 2 do
    ids[#ids + 1] = ARGV[j]
    if redis.call('XACK', lane, GROUP, ARGV[j]) == 1 then done = done + tonumber(ARGV[j + 1]) end
  end
  i = i + 2 + 2 * n
  if done > 0 then redis.call('HINCRBY', DEPTH, lane, -done) end
  local groups = redis.pcall('XINFO', 'GROUPS', lane)  -- an error if no such lane
  local last
  if not groups.err then
    for _, g in ipairs(groups) do
      if g[2] == GROUP then last = g[8] end
    end
  end
  if last then
    local p = redis.call('XPENDING', lane, GROUP)
    local minid = last
    if p[1] > 0 then
      minid = p[2]
      local held = tonumber(string.match(last, '^%d+')) - tonumber(string.match(minid, '^%d+'))
      if held > {TRIM_SPAN_MS} then
        for k = 1, #ids, 1000 do
          redis.call('XDEL', lane, unpack(ids, k, math.min(#ids, k + 999)))
        end
      end
    else
      local newest = redis.call('XREVRANGE', lane, '+', '-', 'COUNT', 1)[1]
      if (not newest) or newest[1] == last then redis.call('HSET', DEPTH, lane, 0) end
    end
    redis.call('XTRIM', lane, 'MINID', minid)
  end
end
return 1
"""
)

# Take a message out of its lane entry and have it come back at `due`.
# KEYS: old lane; ARGV: entry id, member (id|hop|lane), due, last ('1' or ''),
# messages in the entry, message key.
_DEFER = (
    _FINAL_LUA
    + _LANE_LUA
    + """
redis.call('ZADD', DELAYED, ARGV[3], ARGV[2])
leave(KEYS[NK + 1], ARGV[1], ARGV[4] == '1', tonumber(ARGV[5]), ARGV[6])
return 1
"""
)

# Read up to ARGV[2] messages for consumer ARGV[1] from the lanes ARGV[3...], in
# that order (a marketing backlog never delays OTP or transactional traffic).
# Returns per entry: lane, entry id, m, k.
_READ = (
    _LANE_LUA
    + """
local consumer, want, got, out = ARGV[1], tonumber(ARGV[2]), 0, {}
for i = 3, #ARGV do
  local lane = ARGV[i]
  while got < want do
    local r = redis.call('XREADGROUP', 'GROUP', GROUP, consumer,
                         'COUNT', math.ceil((want - got) / LANE_GROUP), 'STREAMS', lane, '>')
    if not r then break end
    for _, e in ipairs(r[1][2]) do
      local m, k = fields(e[2])
      local _, commas = string.gsub(m, ',', '')
      got = got + commas + 1
      out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = lane, e[1], m, k
    end
  end
  if got >= want then break end
end
return out
"""
)

# Reset the idle time of entries this consumer still holds (XCLAIM JUSTID to
# itself), skipping any another consumer has taken over meanwhile.
# ARGV: consumer, then per lane: lane, n, n entry ids. Returns the entries touched.
_KEEP_CLAIMED = f"""
local me, i, touched = ARGV[1], 2, 0
while i <= #ARGV do
  local lane, n = ARGV[i], tonumber(ARGV[i + 1])
  for j = i + 2, i + 1 + n do
    local p = redis.call('XPENDING', lane, '{GROUP}', ARGV[j], ARGV[j], 1)
    if p[1] and p[1][2] == me then
      redis.call('XCLAIM', lane, '{GROUP}', me, 0, ARGV[j], 'JUSTID')
      touched = touched + 1
    end
  end
  i = i + 2 + n
end
return touched
"""

# An entry claimed from a consumer that is gone (reclaim or take-over), shared by
# the two scripts below. Messages that had left the entry before (deferred,
# rerouted: their `d` is this entry) are not handed out again; an entry with
# none left is acknowledged. Appends to `out`: lane, entry id, the ids still to
# look at (joined by commas), k, messages in the entry.
_CLAIMED_LUA = (
    _FINAL_LUA
    + _LANE_LUA
    + """
local function claimed(lane, e, out)
  if not e then return end  -- false: deleted while pending
  local eid = e[1]
  local m, k = fields(e[2])
  local kept, total = {}, 0
  for id in string.gmatch(m, '[^,]+') do
    total = total + 1
    if redis.call('HGET', msg(id), 'd') ~= eid then kept[#kept + 1] = id end
  end
  if #kept == 0 then
    leave(lane, eid, true, total, '')
  else
    out[#out + 1], out[#out + 2], out[#out + 3] = lane, eid, table.concat(kept, ',')
    out[#out + 1], out[#out + 2] = k, total
  end
end
"""
)

# Take over entries idle for ARGV[2] ms (their consumer died), at most ARGV[3]
# entries per lane, for consumer ARGV[1], from the lanes ARGV[4...]. Returns 5
# values per entry as claimed() appends them.
_RECLAIM = (
    _CLAIMED_LUA
    + """
local out = {}
for i = 4, #ARGV do
  local lane = ARGV[i]
  local r = redis.call('XAUTOCLAIM', lane, GROUP, ARGV[1], ARGV[2], '0', 'COUNT', ARGV[3])
  for _, e in ipairs(r[2]) do claimed(lane, e, out) end
end
return out
"""
)

# Take over, for consumer ARGV[1], the entries consumer ARGV[2] holds (it is
# certainly dead: `gateway.dispatch.takeover`), at most ARGV[3] per lane, from the lanes
# ARGV[5...], at once instead of after the reclaim's idle time. ARGV[4] is the
# dead one's identity record (KEYS[1]) as the caller saw it ('' for none): if
# another is there now, a new process took the name (a reused pid) and nothing
# is taken. A record gone meanwhile is fine: another taker finished and deleted
# it, and a new process records itself before it reads a lane. Never our own
# name. From a lane where it holds nothing more the dead consumer is deleted
# (XGROUP DELCONSUMER, which would drop what it still held, is never called
# before). Returns -1 if refused, else 1 when the dead consumer holds nothing
# more in these lanes (0: call again), then the entries as _RECLAIM returns them.
_TAKE_OVER = (
    _CLAIMED_LUA
    + """
local me, dead, count = ARGV[1], ARGV[2], ARGV[3]
local now = redis.call('GET', KEYS[NK + 1])
if dead == me or (now and now ~= ARGV[4]) then return {-1} end
local out, drained = {1}, 1
for i = 5, #ARGV do
  local lane = ARGV[i]
  local p = redis.call('XPENDING', lane, GROUP, '-', '+', count, dead)
  if #p > 0 then
    local ids = {}
    for j, x in ipairs(p) do ids[j] = x[1] end
    for _, e in ipairs(redis.call('XCLAIM', lane, GROUP, me, 0, unpack(ids))) do
      claimed(lane, e, out)
    end
  end
  if #redis.call('XPENDING', lane, GROUP, '-', '+', 1, dead) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', lane, GROUP, dead)
  else
    drained = 0
  end
end
out[1] = drained
return out
"""
)

# Delete consumer KEYS[1]'s identity record if it is still ARGV[1] (not a new
# process's that took the name meanwhile).
_FORGET_CONSUMER = """
if redis.call('GET', KEYS[NK + 1]) == ARGV[1] then return redis.call('DEL', KEYS[NK + 1]) end
return 0
"""

# Move due deferrals back into their lanes; a scheduled message that comes due
# moves to `queued`. ARGV: now, limit, ts. Returns the members moved.
_PROMOTE = (
    _STATUS_LUA
    + _LANE_LUA
    + """
local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local id, hop, lane = string.match(member, '^([^|]+)|([^|]+)|(.+)$')
  local key = msg(id)
  local v = redis.call('HMGET', key, 's', 'b', 'w')
  if v[1] == 'scheduled' then
    local out = {}
    move(id, v, 'queued', ARGV[3], 'send_at reached', out)
    redis.call('HSET', key, unpack(out))
  end
  redis.call('XADD', lane, '*', 'm', id, 'k', hop)
  redis.call('HINCRBY', DEPTH, lane, 1)
  redis.call('ZREM', DELAYED, member)
end
flush()
return #due
"""
)

# Expire messages whose validity (plus receipt grace) has passed. An expiry
# member is the comma-joined ids of messages enqueued by one call whose expiry
# falls in the same second (a single id is a member of one). Messages that
# ended meanwhile cost one HGET here instead of a ZREM when they ended.
# Whole members are taken, one at a time, until `limit` messages were looked
# at. ARGV: now, limit, ts, retention (seconds after which each message looked
# at, and its batch's keys, are deleted; 0: not). Returns {1 if more are due
# else 0, ids expired}.
_EXPIRE_DUE = (
    _STATUS_LUA
    + """
local now, limit, ts, keep = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local expired, seen, batches = {}, 0, {}
while seen < limit do
  local due = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', now, 'LIMIT', 0, 1)
  if #due == 0 then break end
  for id in string.gmatch(due[1], '[^,]+') do
    local key = msg(id)
    local v = redis.call('HMGET', key, 's', 'b', 'w')
    if v[1] and not FINAL[v[1]] then
      local out = {}
      if move(id, v, 'expired', ts, 'validity_elapsed', out) then
        redis.call('HSET', key, unpack(out))
        expired[#expired + 1] = id
      end
    end
    if v[1] and keep > 0 then
      redis.call('EXPIRE', key, keep)
      if v[2] and not batches[v[2]] then  -- its counts, and who owns it
        batches[v[2]] = true
        redis.call('EXPIRE', v[2], keep)
        redis.call('EXPIRE', BOP .. string.sub(v[2], #BATCHP + 1), keep)
      end
    end
    seen = seen + 1
  end
  redis.call('ZREM', EXPIRY, due[1])
end
flush()
local more = #redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', now, 'LIMIT', 0, 1)
return {more, expired}
"""
)

# GCRA (generic cell rate algorithm) shared by every process: grant up to n of
# the requested units now. KEYS: limiter; ARGV: rate per second, burst units, n.
# Returns {granted, ms to wait before asking again}. Time is Redis's own, so
# hosts with skewed clocks still share one rate.
_AUTH_FAILED = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('TTL', KEYS[1])}
"""

_GCRA = """
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local interval = 1000 / tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local room = math.floor((now + burst * interval - tat) / interval)
local granted = math.min(tonumber(ARGV[3]), room)
if granted <= 0 then
  return {0, math.ceil(tat - now - (burst - 1) * interval)}
end
tat = tat + granted * interval
redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil(tat - now) + 1000)
return {granted, 0}
"""

# Resend one failed part on the next connector, once per part. KEYS: message,
# next lane; ARGV: part, id, hop, ts, detail. Returns 1 if resent.
_RESEND_PART = (
    _STATUS_LUA
    + _LANE_LUA
    + """
local key, lane, part = KEYS[NK + 1], KEYS[NK + 2], ARGV[1]
local v = redis.call('HMGET', key, 's', 'p' .. part, 'f' .. part)
if (not v[1]) or FINAL[v[1]] or v[2] or v[3] then return 0 end
local out = {'f' .. part, '1'}
note(key, v, ARGV[4], ARGV[5], out)
redis.call('HSET', key, unpack(out))
redis.call('HDEL', key, 'i' .. part)
redis.call('XADD', lane, '*', 'm', ARGV[2], 'k', ARGV[3])
redis.call('HINCRBY', DEPTH, lane, 1)
return 1
"""
)

# End a message whose retries ran out and keep it in the dead-letter stream.
# KEYS: message; ARGV: status, ts, error code, connector.
_DEAD_LETTER = (
    _STATUS_LUA
    + """
local key = KEYS[NK + 1]
local id = string.sub(key, #MSGP + 1)
local v = redis.call('HMGET', key, 's', 'b', 'w')
local out = {}
if not move(id, v, ARGV[1], ARGV[2], ARGV[3], out) then return 0 end
out[#out + 1], out[#out + 2] = 'e', ARGV[3]
redis.call('HSET', key, unpack(out))
flush()
redis.call('XADD', DLQ, '*', 'm', id, 'e', ARGV[3], 'c', ARGV[4], 't', ARGV[2])
return 1
"""
)


def _ts(now: float | None = None) -> str:
    return f"{time.time() if now is None else now:.3f}"


# id, packed Message, lane key, parts, callback spec (`w`), expiry time, send_at or ''
Record = tuple[str, bytes, str, int, str, float, str]


class Store:
    """The gateway's Redis: every stage's reads and writes, over `shards`
    shards of the key layout (gateway.store.keys). A call that touches
    messages of several shards makes one script call per shard, all in one
    round trip."""

    def __init__(self, client: aioredis.Redis, receipt_grace: float = 300.0,
                 shards: int = 1) -> None:
        self.redis = client
        # How long after the end of validity a receipt may still arrive before
        # the message is declared expired.
        self.receipt_grace = receipt_grace
        self.shards = shards
        use_shards(shards)  # new ids spread over these shards
        # On Redis Cluster a blocking read cannot span shards (see read_lanes).
        self.cluster = isinstance(client, aioredis.RedisCluster)
        self._shard_keys = [shard_keys(k) for k in range(shards)]
        self._rotate = 0  # the shard webhook claims start with
        shard = functools.partial(_register, client, SHARD_LUA)
        self._set_status = shard(_SET_STATUS)
        self._corr_write = shard(_CORR_WRITE)
        self._submitted = shard(_SUBMITTED)
        self._correlate = shard(_CORRELATE)
        self._part_final = shard(_PART_FINAL)
        self._corr_read = shard(_CORR_READ)
        self._apply_receipts = shard(_APPLY_RECEIPTS)
        self._dispatch_view = shard(_DISPATCH_VIEW)
        self._reroute = shard(_REROUTE)
        self._defer = shard(_DEFER)
        self._ack = shard(_ACK)
        self._read = shard(_READ)
        self._reclaim = shard(_RECLAIM)
        self._keep_claimed = shard(_KEEP_CLAIMED)
        self._take_over = shard(_TAKE_OVER)
        self._forget_consumer = shard(_FORGET_CONSUMER)
        self._promote = shard(_PROMOTE)
        self._expire_due = shard(_EXPIRE_DUE)
        self._resend_part = shard(_RESEND_PART)
        self._dead_letter = shard(_DEAD_LETTER)
        self._chunk = shard(_ENQUEUE_CHUNK)
        self._wh_push = shard(_WH_PUSH)
        self._wh_claim = shard(_WH_CLAIM)
        self._wh_settle = shard(_WH_SETTLE)
        self._mo_part = shard(_MO_PART)
        self._mo_done = shard(_MO_DONE)
        self._gcra = client.register_script(_GCRA)
        self._auth_failed = client.register_script(_AUTH_FAILED)
        # (lane, entry id) → [its messages handed out here and not done yet,
        # messages in the entry]
        self._in_flight: dict[tuple[str, bytes], list[int]] = {}
        # Entries one of whose messages failed here without being done: never
        # acknowledged nor kept claimed by this process, so a reclaim hands the
        # message out again.
        self._abandoned: set[tuple[str, bytes]] = set()

    @classmethod
    def from_url(cls, url: str, receipt_grace: float = 300.0, *, cluster: bool = False,
                 shards: int = 1) -> Store:
        """A store on `url` (`redis.url`; `cluster`: `redis.cluster`) over
        `shards` shards (`redis.shards`), its client built by
        gateway.store.client.connect."""
        return cls(connect(url, cluster=cluster), receipt_grace, shards)

    async def ping(self) -> None:
        """Raises unless Redis answers."""
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()

    def _call(self, script: AsyncScript, shard: int, keys: Sequence[str] = (),
              args: Sequence[str | bytes | int | float] = ()) -> Awaitable[object]:
        """One call of a shard script in `shard`."""
        return script(keys=[*self._shard_keys[shard], *keys], args=list(args))

    def _in(self, shard: int, keys: Sequence[str], args: list[str | bytes | int]
            ) -> tuple[list[str], list[str | bytes | int]]:
        """A call of a shard script in `shard`, for `_script_calls`."""
        return [*self._shard_keys[shard], *keys], args

    # --- admission -------------------------------------------------------

    async def enqueue(self, messages: Sequence[Message]) -> None:
        """Persist records and append them to their first connector's lane: one
        script call per (account, batch, shard) group, all in one round trip."""
        groups: dict[tuple[str, str | None], list[Record]] = {}
        for m in messages:
            groups.setdefault((m.account, m.batch_id), []).append(self.record(m))
        for (account, batch_id), records in groups.items():
            await self.enqueue_api(account, [records], batch_id=batch_id)

    def record(self, m: Message) -> Record:
        """A message as the enqueue script takes it: id, packed record, lane,
        parts, its callback spec, when it expires (validity + receipt grace), and
        its send_at if that is still ahead."""
        due = f"{m.send_at:.3f}" if m.send_at and m.send_at > time.time() + 0.5 else ""
        return (m.id, m.pack(), lane_key(shard_of(m.id), m.connectors[0], m.msg_class),
                m.parts, m.webhook, m.expires_at + self.receipt_grace, due)

    # --- state -----------------------------------------------------------

    async def get(self, message_id: str) -> MessageState | None:
        raw = await self.redis.hgetall(msg_key(message_id))
        return _state_from_hash(raw) if raw else None

    async def dispatch_view(self, ids: Sequence[str]) -> list[MessageState | None]:
        """What the dispatcher needs of each message — status, record, and which
        parts the SMSC already acknowledged — in one script call per shard (a
        pipeline of HGETALLs cost a fifth of the dispatcher's CPU in redis-py's
        packing)."""
        by_shard = _by_shard(ids, shard_of)
        calls = [self._in(k, (), list(group)) for k, (_, group) in by_shard.items()]
        replies = await self._script_calls(self._dispatch_view, calls)
        out: list[MessageState | None] = [None] * len(ids)
        for (positions, _), raw in zip(by_shard.values(), replies, strict=True):
            assert isinstance(raw, list)
            for pos, status, record, acked in zip(positions, raw[::3], raw[1::3], raw[2::3],
                                                  strict=True):
                if not status:
                    continue
                parts = {int(k): "" for k in acked.split(b",") if k} if acked else {}
                out[pos] = MessageState(Message.unpack(record), status.decode(), [], None,
                                        None, parts, {})
        return out

    async def get_many(self, ids: Iterable[str]) -> list[MessageState | None]:
        pipe = self.redis.pipeline(transaction=False)
        for message_id in ids:
            pipe.hgetall(msg_key(message_id))
        return [_state_from_hash(raw) if raw else None for raw in await pipe.execute()]

    async def set_status(
        self, message_id: str, status: str, detail: str = "", **fields: str
    ) -> bool:
        args: list[str] = [status, _ts(), detail]
        for name, value in fields.items():
            args += [name, value]
        return bool(await self._call(self._set_status, shard_of(message_id),
                                     [msg_key(message_id)], args))

    async def parts_submitted(self, parts: Sequence[AckedPart]) -> list[bytes | None]:
        """Record acknowledged parts, (connector, message id, part, smsc id as the
        SMSC wrote it, the same id normalised for correlation, ttl, parts in
        total) each: first their correlations (one script call per correlation
        shard), then the messages (one per message shard). The message keeps
        the id as written (it is what the carrier's records show); receipts are
        matched on the normalised one. Per part: None, or what became of a
        receipt that arrived early: b"=<status>" / b"=" if it was applied, else
        its payload."""
        by_corr = _by_shard(parts, lambda p: corr_shard(p[4], self.shards))
        calls = []
        for k, (_, group) in by_corr.items():
            flat: list[str] = []
            for connector, message_id, part, smsc, match_id, ttl, total in group:
                flat += (corr_key(k, connector, match_id),
                         f"{message_id}|{part}|{total}|{connector}|{smsc}",
                         str(max(ttl, 60)))
            # One packed argument: redis-py's per-argument packing was the cost.
            calls.append(self._in(k, (), [msgpack.packb(flat, use_bin_type=False)]))
        early: list[bytes] = [b""] * len(parts)
        for (positions, _), reply in zip(by_corr.values(),
                                         await self._script_calls(self._corr_write, calls),
                                         strict=True):
            assert isinstance(reply, list)
            for pos, value in zip(positions, reply, strict=True):
                early[pos] = value
        by_msg = _by_shard(range(len(parts)), lambda i: shard_of(parts[i][1]))
        ts, calls = _ts(), []
        for k, (_, group) in by_msg.items():
            flat = []
            for i in group:
                connector, message_id, part, smsc_id, _match, _ttl, total = parts[i]
                flat += (message_id, str(part), smsc_id, connector, str(total), early[i])
            calls.append(self._in(k, (), [ts, msgpack.packb(flat, use_bin_type=False)]))
        out: list[bytes | None] = [None] * len(parts)
        for (_, group), reply in zip(by_msg.values(),
                                     await self._script_calls(self._submitted, calls),
                                     strict=True):
            assert isinstance(reply, list)
            for i, r in zip(group, reply, strict=True):
                out[i] = r or None
        return out

    async def apply_receipts(
        self, receipts: Sequence[tuple[str, str, bytes]], ttl: int
    ) -> list[tuple[str, str | None] | None]:
        """Correlate and apply (connector, smsc id, "state|err|stat") receipts:
        per receipt None if parked until its submit_sm_resp, else (message id,
        the message's new final status if this receipt set one). One script
        call per correlation shard, then one per message shard."""
        by_corr = _by_shard(receipts, lambda r: corr_shard(r[1], self.shards))
        calls = []
        for k, (_, group) in by_corr.items():
            flat: list[str | bytes] = []
            for connector, smsc_id, payload in group:
                flat += (corr_key(k, connector, smsc_id), payload)
            calls.append(self._in(k, (), [max(ttl, 60), msgpack.packb(flat, use_bin_type=False)]))
        # (position, message id, part, parts in total, connector, smsc id)
        found: list[tuple[int, str, str, str, str, str]] = []
        for (positions, _), reply in zip(by_corr.values(),
                                         await self._script_calls(self._corr_read, calls),
                                         strict=True):
            assert isinstance(reply, list)
            for pos, value in zip(positions, reply, strict=True):
                if value:
                    message_id, part, total, connector, smsc = _correlation(value)
                    found.append((pos, message_id, part, total, connector, smsc))
        out: list[tuple[str, str | None] | None] = [None] * len(receipts)
        if not found:
            return out
        by_msg = _by_shard(found, lambda f: shard_of(f[1]))
        ts, calls = _ts(), []
        for k, (_, group) in by_msg.items():
            flat = []
            for pos, message_id, part, total, connector, smsc in group:
                flat += (message_id, part, receipts[pos][2], total, connector, smsc)
            calls.append(self._in(k, (), [ts, msgpack.packb(flat, use_bin_type=False)]))
        for (_, group), reply in zip(by_msg.values(),
                                     await self._script_calls(self._apply_receipts, calls),
                                     strict=True):
            assert isinstance(reply, list)
            for (pos, message_id, *_), new in zip(group, reply, strict=True):
                out[pos] = (message_id, new.decode() or None)
        return out

    async def correlate(
        self, connector: str, smsc_id: str, receipt: bytes, ttl: int
    ) -> tuple[str, int] | None:
        k = corr_shard(smsc_id, self.shards)
        value = await self._call(self._correlate, k, [corr_key(k, connector, smsc_id)],
                                 [receipt, max(ttl, 60)])
        if not value:
            return None
        assert isinstance(value, bytes)
        message_id, part, *_ = _correlation(value)
        return message_id, int(part)

    async def part_final(
        self, message_id: str, part: int, state: str, error_code: str, detail: str
    ) -> str | None:
        """Record a part's final state; returns the message's new final status, if it changed."""
        new = await self._call(self._part_final, shard_of(message_id), (),
                               [message_id, part, state, _ts(), error_code, detail])
        return new.decode() if isinstance(new, bytes) else None

    async def batch_counts(self, batch_id: str) -> dict[str, int]:
        raw = await self.redis.hgetall(batch_key(batch_id))
        return {k.decode(): int(v) for k, v in raw.items()}

    # --- lanes -----------------------------------------------------------

    def _lanes(self, shard: int, connector: str) -> list[str]:
        return [lane_key(shard, connector, c) for c in LANES]

    async def ensure_lanes(self, connector: str) -> None:
        for k in range(self.shards):
            for lane in self._lanes(k, connector):
                try:
                    await self.redis.xgroup_create(lane, GROUP, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

    async def read_lanes(
        self, connector: str, consumer: str, count: int, block_ms: int
    ) -> list[LaneEntry]:
        """About `count` messages (up to LANE_GROUP - 1 more: an entry is read
        whole; with several shards about count / shards from each), higher
        lanes first: a marketing backlog never delays OTP or transactional
        traffic. One script call per shard; if every lane is empty, one
        blocking read of all of them (on Redis Cluster, where a blocking read
        cannot span slots, a pause of up to 20 ms instead)."""
        want = -(-count // self.shards)
        calls = [self._in(k, (), [consumer, want, *self._lanes(k, connector)])
                 for k in range(self.shards)]
        flat: list[bytes | str] = []
        for reply in await self._script_calls(self._read, calls):
            assert isinstance(reply, list)
            flat += reply
        if flat:
            return self._handed_out(flat, 4)
        if self.cluster:
            await asyncio.sleep(min(block_ms, 20) / 1000)
            return []
        lanes = [lane for k in range(self.shards) for lane in self._lanes(k, connector)]
        got = await self.redis.xreadgroup(
            GROUP, consumer, dict.fromkeys(lanes, ">"), count=-(-count // LANE_GROUP),
            block=block_ms,
        )
        for lane, items in got or ():
            for eid, f in items:
                if f:
                    flat += (lane, eid, f[b"m"], f.get(b"k", b"0"))
        return self._handed_out(flat, 4)

    async def keep_claimed(self, consumer: str) -> int:
        """Tell Redis the entries this process holds (handed out, not yet
        acknowledged) are still being worked on: their idle time restarts, so a
        reclaim — another worker's or this one's — never takes an entry whose
        messages are still being sent or retried here. Without it a message in a
        long throttle backoff (over `dispatch.claim_idle_ms`) was reclaimed and
        sent a second time. Returns the entries touched."""
        by_lane: dict[str, list[bytes]] = {}
        for lane, entry_id in list(self._in_flight):
            if (lane, entry_id) not in self._abandoned:
                by_lane.setdefault(lane, []).append(entry_id)
        args: dict[int, list[str | bytes | int]] = {}
        for lane, ids in by_lane.items():
            args.setdefault(key_shard(lane), [consumer]).extend((lane, len(ids), *ids))
        if not args:
            return 0
        replies = await self._script_calls(
            self._keep_claimed, [self._in(k, (), a) for k, a in args.items()])
        return sum(int(r) for r in replies)  # type: ignore[call-overload]

    async def reclaim(
        self, connector: str, consumer: str, idle_ms: int, count: int
    ) -> list[LaneEntry]:
        """Take over entries a dead process read but never acknowledged (about
        `count` messages per lane), without the messages that had already left
        them (deferred, rerouted)."""
        calls = [self._in(k, (), [consumer, idle_ms, -(-count // LANE_GROUP),
                                  *self._lanes(k, connector)])
                 for k in range(self.shards)]
        flat: list[bytes | str] = []
        for reply in await self._script_calls(self._reclaim, calls):
            assert isinstance(reply, list)
            flat += reply
        return self._handed_out(flat, 5)

    async def take_over(
        self, dead: str, connector: str, consumer: str, count: int, record: bytes = b""
    ) -> tuple[bool | None, list[LaneEntry]]:
        """Take over at once, for `consumer`, the entries of `connector`'s lanes
        that `dead` holds (about `count` messages per lane), as `reclaim` would
        after `dispatch.claim_idle_ms`: without the messages that had left
        them. Only for a consumer known to be dead (`gateway.dispatch.takeover`):
        `record` is its identity record as read when that was decided (b"" for
        none); if another has been recorded since, a new process has the name
        and nothing is taken (per shard: the record has a copy in each).
        Returns (None if refused, else whether `dead` holds nothing more here,
        in which case it is removed from these lanes' group), and the entries."""
        calls = [self._in(k, [consumer_key(k, dead)],
                          [consumer, dead, -(-count // LANE_GROUP), record,
                           *self._lanes(k, connector)])
                 for k in range(self.shards)]
        drained: bool | None = True
        flat: list[bytes | str] = []
        for reply in await self._script_calls(self._take_over, calls):
            assert isinstance(reply, list)
            if int(reply[0]) < 0:
                drained = None
                continue
            if drained is not None and not int(reply[0]):
                drained = False
            flat += reply[1:]
        return drained, self._handed_out(flat, 5)

    async def record_consumer(self, consumer: str, identity: bytes) -> None:
        """Write (or renew) the identity record of the worker reading as
        `consumer`, in every shard."""
        pipe = self.redis.pipeline(transaction=False)
        for k in range(self.shards):
            pipe.set(consumer_key(k, consumer), identity, ex=CONSUMER_TTL)
        await pipe.execute()

    async def consumer_records(self, consumers: Sequence[str]) -> list[bytes | None]:
        if not consumers:
            return []
        # Shard 0's copies: one slot, one MGET.
        return list(await self.redis.mget([consumer_key(0, c) for c in consumers]))

    async def forget_consumer(self, consumer: str, record: bytes) -> bool:
        """Delete a dead consumer's identity record, unless a new process has
        recorded itself under that name since `record` was read."""
        if not record:
            return False
        calls = [self._in(k, [consumer_key(k, consumer)], [record])
                 for k in range(self.shards)]
        replies = await self._script_calls(self._forget_consumer, calls)
        return any(int(r) for r in replies)  # type: ignore[call-overload]

    async def group_consumers(self, connectors: Iterable[str]) -> set[str]:
        """Every consumer of the `dispatch` group of these connectors' lanes (a
        lane not created yet has none)."""
        pipe = self.redis.pipeline(transaction=False)
        for connector in connectors:
            for k in range(self.shards):
                for lane in self._lanes(k, connector):
                    pipe.xinfo_consumers(lane, GROUP)
        names: set[str] = set()
        for reply in await pipe.execute(raise_on_error=False):
            if isinstance(reply, ResponseError):
                continue  # no such lane or group yet
            if isinstance(reply, Exception):
                raise reply
            for c in reply:
                name = c["name"]
                names.add(name.decode() if isinstance(name, bytes) else name)
        return names

    def _handed_out(self, flat: Sequence[bytes | str], width: int) -> list[LaneEntry]:
        """LaneEntries, one per message, from flat (lane, entry id, ids, hop[,
        messages in the entry]) rows; counts each entry's messages in flight
        here, so the entry is acknowledged when the last of them is done."""
        out: list[LaneEntry] = []
        for i in range(0, len(flat), width):
            lane_raw, eid, ids_raw, hop_raw = flat[i : i + 4]
            lane = lane_raw.decode() if isinstance(lane_raw, bytes) else lane_raw
            entry_id = eid if isinstance(eid, bytes) else eid.encode()
            ids = (ids_raw.decode() if isinstance(ids_raw, bytes) else ids_raw).split(",")
            hop = int(hop_raw)
            total = int(flat[i + 4]) if width > 4 else len(ids)
            # Handed out again (reclaimed) while still counted here: the new copy
            # counts, the old one may never finish (as a single entry would be
            # acknowledged by whichever copy finishes first).
            self._in_flight[(lane, entry_id)] = [len(ids), total]
            self._abandoned.discard((lane, entry_id))
            out += [LaneEntry(lane, entry_id, message_id, hop) for message_id in ids]
        return out

    def _leave(self, lane: str, entry_id: bytes) -> tuple[bool, int]:
        """One message of an entry is done here: (was it the last one, messages
        in the entry)."""
        key = (lane, entry_id)
        held = self._in_flight.get(key)
        if held is None:
            return True, 1  # not handed out by this store (e.g. before a restart)
        held[0] -= 1
        if held[0] > 0:
            return False, held[1]
        del self._in_flight[key]
        if key in self._abandoned:  # left pending for a reclaim
            self._abandoned.discard(key)
            return False, held[1]
        return True, held[1]

    def abandon(self, lane: str, entry_id: bytes) -> None:
        """A message of this entry failed here and is not done (a Redis write
        failed, a task crashed): the entry is neither acknowledged nor kept
        claimed by this process any more, so after `dispatch.claim_idle_ms` a
        reclaim hands its messages out again (those already done are skipped)."""
        key = (lane, entry_id)
        if key in self._in_flight:
            self._abandoned.add(key)
            self._leave(lane, entry_id)

    async def ack(self, entries: Iterable[tuple[str, bytes]]) -> None:
        """The messages of these (lane, entry id)s are done: acknowledge each entry
        whose last message this was, in one script call per shard; the lanes are
        trimmed behind the oldest entry still in flight (see _ACK)."""
        by_lane: dict[str, list[bytes | int]] = {}
        for lane, entry_id in entries:
            last, total = self._leave(lane, entry_id)
            if last:
                by_lane.setdefault(lane, []).extend((entry_id, total))
        args: dict[int, list[str | bytes | int]] = {}
        for lane, pairs in by_lane.items():
            args.setdefault(key_shard(lane), []).extend((lane, len(pairs) // 2, *pairs))
        if args:
            await self._script_calls(self._ack, [self._in(k, (), a) for k, a in args.items()])

    async def lane_depths(self, connectors: Iterable[str]) -> dict[str, int]:
        """Messages per lane (summed over the shards), waiting or in flight."""
        lanes = [(connector, msg_class) for connector in connectors for msg_class in LANES]
        if not lanes:
            return {}
        names = [f"{connector}:{msg_class}" for connector, msg_class in lanes]
        pipe = self.redis.pipeline(transaction=False)
        for k in range(self.shards):
            pipe.hmget(depth_key(k), [lane_key(k, *lane) for lane in lanes])
        totals = dict.fromkeys(names, 0)
        for counts in await pipe.execute():
            for name, c in zip(names, counts, strict=True):
                totals[name] += int(c or 0)
        return {name: max(0, n) for name, n in totals.items()}

    # --- admission: chunks, idempotency, batches ----------------------------

    def _chunk_args(
        self,
        account: str,
        records: Sequence[Record],
        batch_id: str | None,
        idem: tuple[str, str, str, bytes, bytes, int] | None,
        ts: str,
        shard: int,
    ) -> tuple[list[str], list[str | bytes | int]]:
        mode, key, token, body_hash, response, ttl = idem or ("", "", "", b"", b"", 0)
        args: list[str | bytes | int] = [
            mode, token, body_hash, response, ttl,
            batch_key(batch_id) if batch_id else "",
            batch_owner_key(batch_id) if batch_id and mode != "next" else "",
            account, ts,
        ]
        flat: list[str | bytes] = []
        for message_id, packed, lane, _parts, webhook, expiry, due in records:
            flat += (message_id, packed, lane, webhook, f"{expiry:.3f}", due)
        # use_bin_type=False: Lua's cmsgpack reads every string type as a Lua string.
        args.append(msgpack.packb(flat, use_bin_type=False))
        return self._in(shard, [key] if mode else [], args)

    async def enqueue_api(
        self,
        account: str,
        chunks: Sequence[Sequence[Record]],
        *,
        batch_id: str | None = None,
        idem: tuple[str, str, bytes, bytes, int] | None = None,
        ts: float | None = None,
    ) -> tuple[bytes, bytes] | None:
        """Persist chunks of `Store.record`s in one pipelined round trip, one
        `_ENQUEUE_CHUNK` call per chunk. A batch's messages are of the batch's
        shard, and a request with an idempotency key has its messages in the
        key's shard (`keys.idem_shard`): the ingress makes their ids so.

        idem is (key, token, body hash, response, ttl). Returns None when this
        request's messages were queued, or (body hash, response) of the earlier
        request that owns the idempotency key — then nothing was queued.
        """
        stamp = _ts(ts)
        if idem is not None:
            shard = key_shard(idem[0])
        elif batch_id is not None:
            shard = shard_of(batch_id)
        else:
            shard = -1  # each record's own
        calls = []
        for i, chunk in enumerate(chunks or [[]]):
            spec = None
            if idem is not None:
                key, token, body_hash, response, ttl = idem
                spec = ("first" if i == 0 else "next", key, token, body_hash,
                        response if i == 0 else b"", ttl)
            if shard >= 0:
                if any(shard_of(r[0]) != shard for r in chunk):
                    raise ValueError("a batch's or idempotent request's messages must be of "
                                     "its shard (ids from new_id/id_sequence of that shard)")
                calls.append(self._chunk_args(account, chunk, batch_id, spec, stamp, shard))
            else:
                for k, (_, group) in _by_shard(chunk, lambda r: shard_of(r[0])).items():
                    calls.append(self._chunk_args(account, group, None, None, stamp, k))
        if not calls:
            return None
        first = (await self._script_calls(self._chunk, calls))[0]
        if isinstance(first, list):
            return first[0], first[1]
        return None

    async def _script_calls(
        self, script: AsyncScript, calls: Sequence[tuple[list[str], list[str | bytes | int]]]
    ) -> list[object]:
        """Run calls of one script in one pipelined round trip (a call alone
        goes straight)."""
        if len(calls) == 1:
            keys, args = calls[0]
            return [await script(keys=keys, args=args)]
        # EVALSHA straight on the pipeline: redis-py's script registration would
        # cost a SCRIPT EXISTS round trip on every request. A call answered
        # NOSCRIPT ran nothing (a restarted server or, on a cluster, a master
        # that never saw the script), so it alone is sent again after the script
        # is loaded (on every master); the others ran, and are not.
        out: list[object] = [None] * len(calls)
        todo = list(range(len(calls)))
        for _attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for i in todo:
                keys, args = calls[i]
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
            missing = []
            for i, reply in zip(todo, replies, strict=True):
                if isinstance(reply, NoScriptError):
                    missing.append(i)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    out[i] = reply
            if not missing:
                return out
            await self.redis.script_load(script.script)
            todo = missing
        raise NoScriptError("script could not be loaded")

    async def enqueue_records(
        self, records: Sequence[Record], optouts: Sequence[tuple[int, str, str]] = ()
    ) -> set[int]:
        """Persist messages without a batch or an idempotency key, of any accounts
        and shards, in one `_ENQUEUE_CHUNK` call per shard: the script's account
        argument only names a batch's owner, so single messages of several
        accounts can share a call.

        optouts: (index in records, account, number) of marketing messages; each
        whose number is on its account's opt-out list is left out. Returns the
        indices left out. The lists are read first (one SMISMEMBER per account
        with an opt-out list; an opt-out added meanwhile counts as after the
        submission)."""
        left_out: set[int] = set()
        if optouts:
            by_account: dict[str, list[tuple[int, str]]] = {}
            for index, account, number in optouts:
                by_account.setdefault(account, []).append((index, number))
            for account, checks in by_account.items():
                listed = await self.optout_many(account, [n for _, n in checks])
                left_out.update(i for (i, _), out in zip(checks, listed, strict=True) if out)
        kept = [r for i, r in enumerate(records) if i not in left_out]
        if kept:
            await self.enqueue_api("", [kept])
        return left_out

    async def idempotent_response(self, key: str) -> tuple[bytes, bytes] | None:
        """(body hash, response) stored under an idempotency key, if any."""
        body_hash, response = await self.redis.hmget(key, "h", "r")
        return (body_hash, response) if body_hash is not None else None

    async def batch_owner(self, batch_id: str) -> str | None:
        owner = await self.redis.get(batch_owner_key(batch_id))
        return owner.decode() if owner else None

    # --- failed API keys per source address ----------------------------------

    async def auth_failed(self, source: str, window: int) -> tuple[int, int]:
        """Count one failed API key from `source`: (failures in the current
        window, seconds the window still runs). The window starts at the first
        failure; the key `smsgw:authfail:<source>` expires with it."""
        count, ttl = await self._auth_failed(keys=[authfail_key(source)], args=[window])
        return int(count), max(1, int(ttl))

    async def auth_block(self, source: str, seconds: float) -> None:
        """Tell every worker and host that `source` is blocked for `seconds`
        (`smsgw:authblocked`, a sorted set of sources by the time their block
        ends)."""
        await self.redis.zadd(AUTH_BLOCKED, {source: time.time() + seconds})

    async def auth_blocked(self) -> dict[str, float]:
        """Sources blocked now → seconds their block still runs; ended ones
        are dropped from the set."""
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(AUTH_BLOCKED, "-inf", now)
            pipe.zrangebyscore(AUTH_BLOCKED, now, "+inf", withscores=True)
            _, blocked = await pipe.execute()
        return {(m.decode() if isinstance(m, bytes) else m): until - now
                for m, until in blocked}

    async def auth_blocks_left(self, sources: Sequence[str]) -> list[float | None]:
        """Per source, the seconds its block (Store.auth_block) still runs, or
        None when it is not blocked: one ZMSCORE, read-only."""
        now = time.time()
        ends = await self.redis.zmscore(AUTH_BLOCKED, list(sources))
        return [None if until is None or until <= now else until - now for until in ends]

    # --- opt-outs ----------------------------------------------------------

    async def optout_add(self, account: str, number: str) -> bool:
        return bool(await self.redis.sadd(optout_key(account), number))

    async def optout_remove(self, account: str, number: str) -> bool:
        return bool(await self.redis.srem(optout_key(account), number))

    async def optout_has(self, account: str, number: str) -> bool:
        return bool(await self.redis.sismember(optout_key(account), number))

    async def optout_many(self, account: str, numbers: Sequence[str]) -> list[bool]:
        if not numbers:
            return []
        if len(numbers) == 1:
            return [await self.optout_has(account, numbers[0])]
        key = optout_key(account)
        # An account with no opt-outs (the set does not exist) is answered by one
        # EXISTS instead of a 10,000-argument SMISMEMBER.
        if not await self.redis.exists(key):
            return [False] * len(numbers)
        found = await self.redis.smismember(key, list(numbers))
        return [bool(x) for x in found]

    async def optout_page(self, account: str, cursor: int, count: int) -> tuple[int, list[str]]:
        nxt, members = await self.redis.sscan(optout_key(account), cursor, count=count)
        return int(nxt), sorted(m.decode() for m in members)

    # --- webhooks ----------------------------------------------------------

    async def webhook_push(self, queue: str, entry: bytes, now: float | None = None) -> None:
        """Append a rendered delivery (an MO message: WH_RENDERED + packed) to a
        receiver queue (in the shard of the queue's name, so one receiver's
        MO messages stay in order). Status callbacks are pushed by the status
        scripts."""
        k = conversation_shard(queue, self.shards)
        await self._call(self._wh_push, k, (), [wh_queue_key(k, queue), queue, entry, _ts(now)])

    async def mo_part(self, conversation: str, seq: int, total: int, text: bytes,
                      due: float, ttl: int) -> dict[int, bytes] | None:
        """Keep part `seq` of `total` of an MO message; all its parts by number
        once every one is in (until `mo_done`), else None."""
        k = conversation_shard(conversation, self.shards)
        flat = await self._call(
            self._mo_part, k, (),
            [mo_parts_key(k, conversation), seq, text, total, _ts(due), ttl, conversation],
        )
        if not flat:
            return None
        assert isinstance(flat, list)
        return {int(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}

    async def mo_overdue(self, now: float, limit: int = 100) -> list[tuple[str, dict[int, bytes]]]:
        """MO messages still missing parts at their give-up time: (conversation,
        the parts that came). They stay until `mo_done`."""
        out: list[tuple[str, dict[int, bytes]]] = []
        for k in range(self.shards):
            due = [c.decode() for c in await self.redis.zrangebyscore(
                mo_due_key(k), "-inf", _ts(now), start=0, num=limit)]
            if not due:
                continue
            pipe = self.redis.pipeline(transaction=False)
            for conversation in due:
                pipe.hgetall(mo_parts_key(k, conversation))
            gone: list[str] = []
            for conversation, raw in zip(due, await pipe.execute(), strict=True):
                if not raw or b"done" in raw:  # gone by its TTL, or sent meanwhile
                    gone.append(conversation)
                else:
                    out.append((conversation, {int(x): v for x, v in raw.items()}))
            if gone:
                await self.redis.zrem(mo_due_key(k), *gone)
        return out

    async def mo_done(self, conversation: str, queue: str, entry: bytes, ttl: int,
                      now: float | None = None) -> bool:
        """Queue the webhook of a whole (or given-up) MO message and drop its
        parts, leaving a mark for `ttl` seconds that ignores later copies of
        them; False if another call did it first."""
        k = conversation_shard(conversation, self.shards)
        return bool(await self._call(
            self._mo_done, k, (),
            [mo_parts_key(k, conversation), _ts(now), wh_queue_key(k, queue), queue, entry,
             ttl, conversation],
        ))

    async def webhook_claim(
        self, now: float, lease: float, limit: int, token: str, single: int,
        skip: Sequence[str] = (),
    ) -> tuple[list[Claim], float | None]:
        """Lease up to `limit` due receiver queues (not those of the receivers in
        `skip`, "<rid>:<account>" each) until now + lease, under `token`: each
        with the attempts of its head and its first entries (a batch for a
        batching receiver, up to `single` for one taking single events). A
        status entry comes with the fields of its message a callback needs
        (WH_FIELDS, then the SMSC ids of parts 2..n if it has more parts; None
        where a field or the message is gone). The shards are asked in turn,
        starting one further each call, until `limit` queues are leased. With
        nothing due: ([], the time the next queue falls due, or None)."""
        claims: list[Claim] = []
        next_due: float | None = None
        start = self._rotate = (self._rotate + 1) % self.shards
        for j in range(self.shards):
            k = (start + j) % self.shards
            flat = await self._call(
                self._wh_claim, k, (),
                [_ts(now), _ts(now + lease), limit - len(claims), token, single, *skip])
            assert isinstance(flat, list)
            if flat and flat[0] == b"next":
                if len(flat) > 1:
                    due = float(flat[1])
                    next_due = due if next_due is None else min(next_due, due)
                continue
            claims += _claims(k, flat)
            if len(claims) >= limit:
                break
        return claims, (None if claims else next_due)

    async def webhook_settle(self, settles: Sequence[Settle], now: float | None = None
                             ) -> None:
        """Hand leased queues back in one script call per shard: per queue, drop
        the entries delivered and those given up (to the dead-letter stream,
        with the reason), then make it due again at `retry_at` (a failed
        attempt, counted against the new head) or now if entries are left. A
        settle whose lease passed to another claim does nothing: that claim
        owns the queue now."""
        stamp = _ts(now)
        args: dict[int, list[str | bytes | int]] = {}
        for st in settles:
            args.setdefault(st.shard, [stamp]).extend((
                wh_queue_key(st.shard, st.queue), st.queue, st.token, st.delivered, st.dead,
                st.reason, _ts(st.retry_at) if st.retry_at is not None else ""))
        if args:
            await self._script_calls(self._wh_settle,
                                     [self._in(k, (), a) for k, a in args.items()])

    async def webhook_backlog(self) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        for k in range(self.shards):
            pipe.zcard(wh_due_key(k))
            pipe.xlen(wh_dead_key(k))
        counts = await pipe.execute()
        return {"queues": sum(int(c) for c in counts[::2]),
                "dead": sum(int(c) for c in counts[1::2])}

    # --- delivery: failover, deferral, expiry, limits, dead letters --------

    async def reroute(self, entry: LaneEntry, message: Message, hop: int, detail: str) -> None:
        """Move a message from its lane entry to the lane of the connector at `hop`
        in the message's route."""
        last, total = self._leave(entry.lane, entry.entry_id)
        k = shard_of(message.id)
        await self._call(
            self._reroute, k,
            [msg_key(message.id), entry.lane, lane_key(k, message.connectors[hop],
                                                       message.msg_class)],
            [entry.entry_id, message.id, hop, _ts(), detail, "1" if last else "", total],
        )

    async def defer(self, entry: LaneEntry, due: float) -> None:
        """Take the message out of its lane entry; it comes back (same lane, same
        hop) at `due`."""
        last, total = self._leave(entry.lane, entry.entry_id)
        member = f"{entry.message_id}|{entry.hop}|{entry.lane}"
        await self._call(self._defer, key_shard(entry.lane), [entry.lane], [
            entry.entry_id, member, f"{due:.3f}", "1" if last else "", total,
            msg_key(entry.message_id),
        ])

    async def promote_due(self, limit: int = 1000) -> int:
        now = time.time()
        calls = [self._in(k, (), [f"{now:.3f}", limit, _ts(now)]) for k in range(self.shards)]
        return sum(int(n) for n in await self._script_calls(self._promote, calls))  # type: ignore[call-overload]

    async def expire_due(
        self, limit: int = 1000, now: float | None = None, rounds: int = 20,
        retention: int = 0,
    ) -> list[str]:
        """Expire messages whose expiry (end of validity + receipt grace) is at or
        before `now`; returns the ids expired. Every message is looked at once
        when its expiry comes (most are final by then), so while more are due
        this takes, per shard, up to `rounds` script calls of about `limit`
        messages each: one call stays short, and the housekeeper keeps up with
        the traffic. With `retention` (seconds) each message looked at, and its
        batch's counts, are deleted by Redis that long afterwards."""
        now = time.time() if now is None else now
        out: list[str] = []
        for k in range(self.shards):
            for _ in range(max(1, rounds)):
                reply = await self._call(self._expire_due, k, (),
                                         [f"{now:.3f}", limit, _ts(now), int(retention)])
                assert isinstance(reply, list)
                more, ids = reply
                out += [i.decode() for i in ids]
                if not more:
                    break
        return out

    async def rate_acquire(self, name: str, rate: float, burst: float, n: int) -> tuple[int, float]:
        """Take up to n units from the shared limiter `name`: (granted, seconds to wait)."""
        granted, wait_ms = await self._gcra(
            keys=[rate_key(name)], args=[rate, max(1.0, burst), n]
        )
        return int(granted), int(wait_ms) / 1000

    async def resend_part(
        self, message: Message, part: int, hop: int, detail: str
    ) -> bool:
        """Send a failed part once more on the connector at `hop` (never twice)."""
        k = shard_of(message.id)
        lane = lane_key(k, message.connectors[hop], message.msg_class)
        return bool(await self._call(self._resend_part, k, [msg_key(message.id), lane],
                                     [part, message.id, hop, _ts(), detail]))

    async def dead_letter(
        self, message_id: str, status: str, error_code: str, connector: str
    ) -> bool:
        return bool(await self._call(self._dead_letter, shard_of(message_id),
                                     [msg_key(message_id)],
                                     [status, _ts(), error_code, connector]))

    async def dead_letters(self, count: int = 100) -> list[dict[str, str]]:
        """The oldest dead letters of every shard, oldest first; `entry` names one
        for `remove_dead_letter` (``<shard>-<stream entry id>``)."""
        rows: list[tuple[bytes, int, dict[bytes, bytes]]] = []
        for k in range(self.shards):
            rows += [(eid, k, fields) for eid, fields in
                     await self.redis.xrange(dlq_key(k), count=count)]
        rows.sort(key=lambda r: tuple(int(x) for x in r[0].split(b"-")))
        return [
            {"entry": f"{k}-{eid.decode()}",
             **{name.decode(): v.decode() for name, v in fields.items()}}
            for eid, k, fields in rows[:count]
        ]

    async def remove_dead_letter(self, entry: str) -> None:
        k, _, eid = entry.partition("-")
        await self.redis.xdel(dlq_key(int(k)), eid)

    async def dead_letter_count(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for k in range(self.shards):
            pipe.xlen(dlq_key(k))
        return sum(int(n) for n in await pipe.execute())

    async def delayed_count(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for k in range(self.shards):
            pipe.zcard(delayed_key(k))
        return sum(int(n) for n in await pipe.execute())

    # --- connector reports (each worker publishes its view; `smsgw status` reads) --

    async def report_connector(self, worker: str, name: str, report: dict[str, object],
                               ttl: int = 15) -> None:
        await self.redis.set(conn_key(name, worker), orjson.dumps(report), ex=ttl)

    async def publish_metrics(self, host: str, worker: int, snapshot: bytes,
                              ttl: int = 60) -> None:
        """Store this worker's metrics snapshot beside its siblings' on `host`."""
        key = metrics_key(host)
        stamped = f"{time.time():.3f}|".encode() + snapshot
        await self.redis.pipeline(transaction=False).hset(key, str(worker), stamped).expire(
            key, ttl
        ).execute()

    async def host_metrics(self, host: str, max_age: float = 30.0) -> list[bytes]:
        """The snapshots of `host`'s workers published within `max_age` seconds
        (older ones are of workers that are gone, and are dropped)."""
        key = metrics_key(host)
        now, fresh, stale = time.time(), [], []
        for worker, stamped in (await self.redis.hgetall(key)).items():
            at, _, snapshot = stamped.partition(b"|")
            if now - float(at) <= max_age:
                fresh.append(snapshot)
            else:
                stale.append(worker)
        if stale:
            await self.redis.hdel(key, *stale)
        return fresh

    async def connector_reports(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        async for key in self.redis.scan_iter(match=f"{CONN_PREFIX}*", count=1000):
            raw = await self.redis.get(key)
            if raw:
                name, _, worker = key.decode().removeprefix(CONN_PREFIX).partition(":")
                out.setdefault(name, {})[worker] = orjson.loads(raw)
        return out


def _correlation(value: bytes) -> tuple[str, str, str, str, str]:
    """A correlation's (message id, part, parts in total, connector, smsc id)."""
    message_id, part, total, connector, smsc = value.decode().split("|", 4)
    return message_id, part, total, connector, smsc


def _register(client: aioredis.Redis, head: str, src: str) -> AsyncScript:
    return client.register_script(head + src)


def _by_shard(items: Iterable[T], shard: Callable[[T], int]
              ) -> dict[int, tuple[list[int], list[T]]]:
    """Items grouped by shard: shard → (their positions, the items)."""
    out: dict[int, tuple[list[int], list[T]]] = {}
    for pos, item in enumerate(items):
        group = out.get(k := shard(item))
        if group is None:
            group = out[k] = ([], [])
        group[0].append(pos)
        group[1].append(item)
    return out


def _claims(shard: int, flat: Sequence[bytes]) -> list[Claim]:
    """The Claims of one shard's _WH_CLAIM reply."""
    claims: list[Claim] = []
    i, width = 0, len(WH_FIELDS)
    while i < len(flat):
        queue, attempts, count = flat[i].decode(), int(flat[i + 1]), int(flat[i + 2])
        i += 3
        entries: list[tuple[bytes, list[bytes | None] | None]] = []
        for _ in range(count):
            entry = flat[i]
            if entry[:1] == WH_RENDERED:
                entries.append((entry, None))
                i += 1
            else:
                more = int(flat[i + 1 + width])  # ids of parts 2.. after the fields
                entries.append((entry, list(flat[i + 1 : i + 1 + width])
                                + list(flat[i + 2 + width : i + 2 + width + more])))
                i += 2 + width + more
        claims.append(Claim(queue, shard, attempts, entries))
    return claims


class Claim(NamedTuple):
    """A leased receiver queue: its name, shard, failed attempts of its head,
    and its first entries with, for a status entry, its message's WH_FIELDS
    (and the SMSC ids of parts 2..n after them)."""

    queue: str
    shard: int
    attempts: int
    entries: list[tuple[bytes, list[bytes | None] | None]]


class Settle(NamedTuple):
    queue: str
    shard: int  # the Claim's
    token: str
    delivered: int  # entries from the head that the receiver took
    dead: int = 0  # entries after those that are given up
    reason: str = ""  # why they were given up
    retry_at: float | None = None  # the (new) head failed: try again then


# An acknowledged part, as Store.parts_submitted takes it: connector, message
# id, part, SMSC id as written in submit_sm_resp, that id normalised (the
# correlation key's), ttl, parts in total. A plain tuple: the dispatcher builds
# one per part on its hot path.
AckedPart = tuple[str, str, int, str, str, int, int]


class LaneEntry(NamedTuple):
    lane: str
    entry_id: bytes
    message_id: str
    hop: int  # index of this lane's connector in the message's route


def _state_from_hash(raw: dict[bytes, bytes]) -> MessageState:
    first = raw.get(b"h", b"").decode()
    if first and "\t" not in first:  # a bare ts: accepted and queued then (_ENQUEUE_CHUNK)
        lines = [f"{first}\taccepted\t", f"{first}\tqueued\t"]
    else:
        lines = first.splitlines()
    later: list[tuple[int, int, str]] = []  # (status rank, note number or 0, line)
    smsc_ids, part_states = {}, {}
    for name, value in raw.items():
        kind, number = name[:1], name[1:]
        if kind == b"h" and number:
            rank, _, note = number.partition(b".")
            later.append((int(rank), int(note or 0), value.decode()))
        elif not number.isdigit():
            continue
        elif kind == b"i":
            smsc_ids[int(number)] = value.decode()
        elif kind == b"p":
            part_states[int(number)] = value.decode()
    history = []
    for line in lines + [line for *_, line in sorted(later)]:
        ts, status, detail = line.split("\t", 2)
        history.append((float(ts), status, detail))
    error = raw.get(b"e")
    connector = raw.get(b"c")
    return MessageState(
        message=Message.unpack(raw[b"r"]),
        status=raw[b"s"].decode(),
        history=history,
        connector=connector.decode() if connector else None,
        error_code=error.decode() if error else None,
        smsc_ids=smsc_ids,
        part_states=part_states,
    )


# What a status callback needs of its message, read when it is sent: the record,
# connector, error code, and the history lines of admission, queued (after a
# schedule), submitted and the final status.
# A status callback's message fields, read by the claim that leases its queue:
# record, connector, error, the history lines of admission, submitted and the
# finals, parts as the connector cut the text, and the SMSC ids of parts 0 and
# 1. The claim appends the ids of parts 2..n of a message of more parts.
WH_FIELDS = ("r", "c", "e", "h", "h2", "h3", "h4", "n", "i0", "i1")
# First byte of a queue entry that carries its whole body (an MO message).
WH_RENDERED = b"!"


# Append a rendered entry to a webhook queue and make the queue due (if it was not).
_WH_PUSH_LUA = """
local function wh_push(queue_key, queue, entry, now)
  redis.call('RPUSH', queue_key, entry)
  redis.call('ZADD', WH_DUE, 'NX', now, queue)
end
"""
_WH_PUSH = _WH_PUSH_LUA + "wh_push(ARGV[1], ARGV[2], ARGV[3], ARGV[4])\n"

# Store one part of an MO message; once every part is in, return them all (the
# parts stay until _MO_DONE queues the whole message, so a crash in between
# loses nothing: the SMSC resends the part we did not acknowledge).
# ARGV: parts key, part number, text, parts in total, due (give-up time), ttl,
# conversation (MO_DUE's member).
_MO_PART = """
local key = ARGV[1]
if redis.call('HEXISTS', key, 'done') == 1 then return false end  -- a copy, once sent
if redis.call('HSETNX', key, ARGV[2], ARGV[3]) == 1 and redis.call('HLEN', key) == 1 then
  redis.call('ZADD', MO_DUE, ARGV[5], ARGV[7])
  redis.call('EXPIRE', key, ARGV[6])
end
if redis.call('HLEN', key) >= tonumber(ARGV[4]) then return redis.call('HGETALL', key) end
return false
"""

# Queue the webhook of a reassembled (or given-up) MO message and replace its
# parts by a `done` mark that lives as long as they could have (ttl), so a
# second completion, or a copy of a part the SMSC sends again, does nothing.
# ARGV: parts key, now, queue key, queue name, entry, ttl, conversation.
_MO_DONE = _WH_PUSH_LUA + """
if redis.call('HEXISTS', ARGV[1], 'done') == 1 or redis.call('DEL', ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', ARGV[1], 'done', '1')
redis.call('EXPIRE', ARGV[1], ARGV[6])
redis.call('ZREM', MO_DUE, ARGV[7])
wh_push(ARGV[3], ARGV[4], ARGV[5], ARGV[2])
return 1
"""


# Persist one chunk of admitted messages, optionally claiming an idempotency key:
# the message hash, its lane entry (hop 0; up to LANE_GROUP messages of the
# chunk for the same lane share one), its expiry and the batch counters.
# One account and at most one batch per call, so the batch counters move once
# per chunk and the history text is built once. Expiry entries are per call
# too: one member per second in which some of the chunk's messages expire (the
# comma-joined ids, scored by that second rounded up), instead of one ZADD per
# message and a ZREM when it ends.
# KEYS[NK + 1]: idempotency key (when ARGV[1] ~= '').
# ARGV: mode ('' | 'first' | 'next'), token, body hash, response, ttl,
#       batch key or '', batch owner key or '', account, ts, records: one msgpack
#       array of 6 values per message (id, packed record, lane, callback spec or
#       '', expiry time, send_at or '' — a future send_at makes it `scheduled`
#       and it waits in the delayed set instead of its lane). One packed argument
#       instead of several per message: redis-py spent a fifth of a batch's
#       admission time encoding arguments one by one.
# Returns the number queued, or {hash, response} of an earlier request with this key
# ('first'), or -1 when a later chunk finds the key owned by another request ('next').
_ENQUEUE_CHUNK = _FINAL_LUA + _LANE_LUA + """
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
  scheduled = ts .. '\\taccepted\\t\\n' .. ts .. '\\tscheduled\\t\\n',
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
"""

_WH_FIELDS_LUA = ", ".join(f"'{f}'" for f in WH_FIELDS)
# Lease due receiver queues. ARGV: now, lease until, most queues, token, entries
# per claim of a single-event queue, then receivers ("<rid>:<account>") to skip
# (they hold their share of this worker's requests). Returns per queue: name,
# attempts of its head, entry count, then each entry followed (unless it is
# rendered) by its message's WH_FIELDS, a count k and the SMSC ids of parts 2
# to k + 1 (k = 0 unless the message has more than one part: a second HMGET
# then, in the same script, not a round trip per callback); or, with nothing
# due, 'next' and the score of the next queue to fall due (if any).
_WH_CLAIM = f"""
local now, lease, limit, token = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local single = tonumber(ARGV[5])
local skip = {{}}
for i = 6, #ARGV do skip[ARGV[i]] = true end
local due = redis.call('ZRANGEBYSCORE', WH_DUE, '-inf', now, 'LIMIT', 0,
                       limit + 64 * (#ARGV - 5))
local out, taken = {{}}, 0
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
        if string.byte(e) ~= {WH_RENDERED[0]} then
          local id = string.match(e, '^([^|]*)')
          local mkey = MSGP .. id
          local f = redis.call('HMGET', mkey, {_WH_FIELDS_LUA})
          for j = 1, {len(WH_FIELDS)} do out[#out + 1] = f[j] end
          local n = tonumber(f[{WH_FIELDS.index("n") + 1}]) or 1
          out[#out + 1] = n > 1 and n - 1 or 0
          if n > 1 then
            local names = {{}}
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
  return {{'next', first[2]}}
end
return out
"""

# Hand leased queues back. ARGV: now, then 7 per queue: queue key, queue,
# token, delivered, dead, reason, retry at or ''.
_WH_SETTLE = """
local now = ARGV[1]
for i = 2, #ARGV, 7 do
  local key, q, token = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local delivered, dead = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  if redis.call('HGET', WH_LEASE, q) == token then
    redis.call('HDEL', WH_LEASE, q)
    if delivered > 0 then redis.call('LPOP', key, delivered) end
    if dead > 0 then
      for _, e in ipairs(redis.call('LPOP', key, dead)) do
        redis.call('XADD', WH_DEAD, 'MAXLEN', '~', 100000, '*', 'q', q, 'e', e,
                   'why', ARGV[i + 5])
      end
    end
    if delivered + dead > 0 then redis.call('HDEL', WH_TRY, q) end
    if ARGV[i + 6] ~= '' then
      redis.call('HINCRBY', WH_TRY, q, 1)
      redis.call('ZADD', WH_DUE, ARGV[i + 6], q)
    elseif redis.call('LLEN', key) > 0 then
      redis.call('ZADD', WH_DUE, now, q)
    else
      redis.call('ZREM', WH_DUE, q)
    end
  end
end
return 1
"""
