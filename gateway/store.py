"""The one module that knows the Redis key layout and the Lua that updates it.

Every other stage calls these methods; none builds a key itself.

Layout (``{...}`` is the hash tag that keeps a message's keys in one slot):
- ``smsgw:m:{<id>}`` hash — ``r`` packed Message, ``s`` status, ``h`` status
  history (``ts\\tstatus\\tdetail`` lines), ``n`` parts, ``a`` account, ``b`` batch
  key, ``c`` connector, ``e`` error code, ``i<k>`` SMSC id of part k,
  ``p<k>`` final state of part k.
- ``smsgw:lane:{<connector>}:<class>`` stream, consumer group ``dispatch``;
  entries carry the message id (``m``); parts already acknowledged are
  known from the ``i<k>`` fields, so a resend skips them.
- ``smsgw:corr:<connector>:<smsc id>`` → ``<id>|<part>`` with a TTL: receipt
  correlation after per-connector id normalisation.
- ``smsgw:early:<connector>:<smsc id>`` — a receipt that beat its submit_sm_resp.
- ``smsgw:b:{<batch>}`` hash — counts by status.
- ``smsgw:events`` stream — every status change of a message that asked for
  callbacks (``w`` set in its hash), in order: ``m`` id, ``s`` status, ``t`` ts.
  The webhook sender consumes it.

The Lua scripts build message and batch keys from ids they are given; on a
single Redis server that is fine. Redis Cluster support (declaring every key
to the script) is tracked in docs/architecture.md.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Sequence

import msgpack
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from gateway.model import FINAL_STATUSES, Message, MessageState

PREFIX = "smsgw:"
GROUP = "dispatch"
LANES = ("otp", "transactional", "marketing")  # read in this order: OTP first


def msg_key(message_id: str) -> str:
    return f"{PREFIX}m:{{{message_id}}}"


def lane_key(connector: str, msg_class: str) -> str:
    return f"{PREFIX}lane:{{{connector}}}:{msg_class}"


def corr_key(connector: str, smsc_id: str) -> str:
    return f"{PREFIX}corr:{connector}:{smsc_id}"


def early_key(connector: str, smsc_id: str) -> str:
    return f"{PREFIX}early:{connector}:{smsc_id}"


def batch_key(batch_id: str) -> str:
    return f"{PREFIX}b:{{{batch_id}}}"


EVENTS_KEY = f"{PREFIX}events"
_FINAL_LUA = (
    "local FINAL = {" + ", ".join(f"{s}=true" for s in sorted(FINAL_STATUSES)) + "}\n"
    + f"local EVENTS = '{EVENTS_KEY}'\nlocal MSG_PREFIX = '{PREFIX}m:'\n"
)

# Move a message to a new status unless it is already final; append history and
# keep the batch counts in step. Shared by the scripts below.
_SET_STATUS_FN = (
    _FINAL_LUA
    + """
local function set_status(key, new, ts, detail)
  local cur = redis.call('HGET', key, 's')
  if (not cur) or FINAL[cur] or cur == new then return false end
  local h = redis.call('HGET', key, 'h') or ''
  redis.call('HSET', key, 's', new, 'h', h .. ts .. '\\t' .. new .. '\\t' .. detail .. '\\n')
  local b = redis.call('HGET', key, 'b')
  if b then
    redis.call('HINCRBY', b, cur, -1)
    redis.call('HINCRBY', b, new, 1)
  end
  if redis.call('HEXISTS', key, 'w') == 1 then
    redis.call('XADD', EVENTS, '*', 'm', string.sub(key, #MSG_PREFIX + 2, -2), 's', new, 't', ts)
  end
  return true
end
"""
)

# ARGV: ts, then per message: key, packed record, lane, batch key or '', parts, account, id,
# callbacks wanted ('1' or '')
_ENQUEUE = _FINAL_LUA + """
local ts = ARGV[1]
for i = 2, #ARGV, 8 do
  local key, lane, b = ARGV[i], ARGV[i + 2], ARGV[i + 3]
  local fields = {'r', ARGV[i + 1], 's', 'queued', 'n', ARGV[i + 4], 'a', ARGV[i + 5],
                  'h', ts .. '\\taccepted\\t\\n' .. ts .. '\\tqueued\\t\\n'}
  if ARGV[i + 7] ~= '' then
    fields[#fields + 1] = 'w'
    fields[#fields + 1] = '1'
    redis.call('XADD', EVENTS, '*', 'm', ARGV[i + 6], 's', 'accepted', 't', ts)
    redis.call('XADD', EVENTS, '*', 'm', ARGV[i + 6], 's', 'queued', 't', ts)
  end
  if b ~= '' then
    fields[#fields + 1] = 'b'
    fields[#fields + 1] = b
    redis.call('HINCRBY', b, 'queued', 1)
    redis.call('HINCRBY', b, 'total', 1)
  end
  redis.call('HSET', key, unpack(fields))
  redis.call('XADD', lane, '*', 'm', ARGV[i + 6])
end
return (#ARGV - 1) / 8
"""

# KEYS: message; ARGV: status, ts, detail, then field/value pairs stored with it.
_SET_STATUS = (
    _SET_STATUS_FN
    + """
local changed = set_status(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
if changed and #ARGV > 3 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
return changed and 1 or 0
"""
)

# A part was acknowledged by the SMSC. KEYS: message, correlation, early receipt;
# ARGV: id, part, smsc id, ts, ttl, connector. Returns an early receipt, if one waited.
_SUBMITTED = (
    _SET_STATUS_FN
    + """
redis.call('SET', KEYS[2], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[5])
redis.call('HSET', KEYS[1], 'i' .. ARGV[2], ARGV[3], 'c', ARGV[6])
set_status(KEYS[1], 'submitted', ARGV[4], ARGV[6] .. ' ' .. ARGV[3])
local early = redis.call('GET', KEYS[3])
if early then redis.call('DEL', KEYS[3]) end
return early
"""
)

# Look up the message part of an SMSC id; if the submit_sm_resp has not been
# seen yet, park the receipt where _SUBMITTED will find it (atomically, so the
# two cannot miss each other). KEYS: correlation, early; ARGV: receipt, ttl.
_CORRELATE = """
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return false
"""

# A part reached a final state. KEYS: message; ARGV: part, part state, ts, err, detail.
# The message is delivered when every part is; the first failed part decides otherwise.
_PART_FINAL = (
    _SET_STATUS_FN
    + """
local key, part, state = KEYS[1], ARGV[1], ARGV[2]
if redis.call('HSETNX', key, 'p' .. part, state) == 0 then return false end
local n = tonumber(redis.call('HGET', key, 'n') or '1')
if state ~= 'delivered' then
  if set_status(key, state, ARGV[3], ARGV[5]) then
    redis.call('HSET', key, 'e', ARGV[4])
    return state
  end
  return false
end
for k = 1, n do
  if redis.call('HGET', key, 'p' .. k) ~= 'delivered' then return false end
end
return set_status(key, 'delivered', ARGV[3], ARGV[5]) and state or false
"""
)


def _ts(now: float | None = None) -> str:
    return f"{time.time() if now is None else now:.3f}"


class Store:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._enqueue = client.register_script(_ENQUEUE)
        self._set_status = client.register_script(_SET_STATUS)
        self._submitted = client.register_script(_SUBMITTED)
        self._correlate = client.register_script(_CORRELATE)
        self._part_final = client.register_script(_PART_FINAL)

    @classmethod
    def from_url(cls, url: str) -> Store:
        # A blocking pool: under a burst, callers wait for a free connection
        # instead of failing with "Too many connections".
        # socket_timeout: redis-py 8 defaults to 5 s, which a pipelined 10,000-message
        # batch can exceed on a busy host (AOF rewrite, shared cores); the request
        # then failed after its messages were written.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=128, timeout=30, socket_timeout=30
        )
        return cls(aioredis.Redis(connection_pool=pool))

    async def close(self) -> None:
        await self.redis.aclose()

    # --- admission -------------------------------------------------------

    async def enqueue(self, messages: Sequence[Message]) -> None:
        """Persist records and append them to their first connector's lane, one
        script call for the whole chunk (one round trip, one AOF write)."""
        if not messages:
            return
        args: list[str | bytes | int] = [_ts()]
        for m in messages:
            args += [
                msg_key(m.id), m.pack(), lane_key(m.connectors[0], m.msg_class),
                batch_key(m.batch_id) if m.batch_id else "", m.parts, m.account, m.id,
                "1" if m.callback_url else "",
            ]
        await self._enqueue(keys=[], args=args)

    # --- state -----------------------------------------------------------

    async def get(self, message_id: str) -> MessageState | None:
        raw = await self.redis.hgetall(msg_key(message_id))
        return _state_from_hash(raw) if raw else None

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
        return bool(await self._set_status(keys=[msg_key(message_id)], args=args))

    async def part_submitted(
        self, connector: str, message_id: str, part: int, smsc_id: str, ttl: int
    ) -> bytes | None:
        """Record the SMSC id of an acknowledged part; returns a receipt that arrived early."""
        result = await self._submitted(
            keys=[msg_key(message_id), corr_key(connector, smsc_id), early_key(connector, smsc_id)],
            args=[message_id, part, smsc_id, _ts(), max(ttl, 60), connector],
        )
        return result if result else None

    async def correlate(
        self, connector: str, smsc_id: str, receipt: bytes, ttl: int
    ) -> tuple[str, int] | None:
        value = await self._correlate(
            keys=[corr_key(connector, smsc_id), early_key(connector, smsc_id)],
            args=[receipt, max(ttl, 60)],
        )
        if not value:
            return None
        message_id, _, part = value.decode().partition("|")
        return message_id, int(part)

    async def part_final(
        self, message_id: str, part: int, state: str, error_code: str, detail: str
    ) -> str | None:
        """Record a part's final state; returns the message's new final status, if it changed."""
        new = await self._part_final(
            keys=[msg_key(message_id)], args=[part, state, _ts(), error_code, detail]
        )
        return new.decode() if new else None

    async def batch_counts(self, batch_id: str) -> dict[str, int]:
        raw = await self.redis.hgetall(batch_key(batch_id))
        return {k.decode(): int(v) for k, v in raw.items()}

    # --- lanes -----------------------------------------------------------

    async def ensure_lanes(self, connector: str) -> None:
        for msg_class in LANES:
            try:
                await self.redis.xgroup_create(
                    lane_key(connector, msg_class), GROUP, id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read_lanes(
        self, connector: str, consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, bytes, str]]:
        """Up to `count` lane entries as (lane key, entry id, message id), higher lanes first:
        a marketing backlog never delays OTP or transactional traffic."""
        out: list[tuple[str, bytes, str]] = []
        for msg_class in LANES:
            lane = lane_key(connector, msg_class)
            got = await self.redis.xreadgroup(GROUP, consumer, {lane: ">"}, count=count - len(out))
            out += _entries(got)
            if len(out) >= count:
                return out
        if out:
            return out
        streams = {lane_key(connector, c): ">" for c in LANES}
        got = await self.redis.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
        return _entries(got)

    async def reclaim(
        self, connector: str, consumer: str, idle_ms: int, count: int
    ) -> list[tuple[str, bytes, str]]:
        """Take over entries a dead process read but never acknowledged."""
        out: list[tuple[str, bytes, str]] = []
        for msg_class in LANES:
            lane = lane_key(connector, msg_class)
            _next, claimed, *_ = await self.redis.xautoclaim(
                lane, GROUP, consumer, min_idle_time=idle_ms, start_id="0", count=count
            )
            out += [(lane, eid, fields[b"m"].decode()) for eid, fields in claimed if fields]
        return out

    async def ack(self, entries: Iterable[tuple[str, bytes]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for lane, entry_id in entries:
            pipe.xack(lane, GROUP, entry_id)
            pipe.xdel(lane, entry_id)
        await pipe.execute()

    async def lane_depths(self, connectors: Iterable[str]) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        names = []
        for connector in connectors:
            for msg_class in LANES:
                names.append(f"{connector}:{msg_class}")
                pipe.xlen(lane_key(connector, msg_class))
        return dict(zip(names, await pipe.execute(), strict=True))

    # === HTTP API and webhooks (issue 4); keys and Lua at the end of the file ===

    @functools.cached_property
    def _api_scripts(self) -> dict[str, AsyncScript]:
        return {
            name: self.redis.register_script(src)
            for name, src in (
                ("chunk", _ENQUEUE_CHUNK), ("wh_queue", _WH_QUEUE), ("wh_claim", _WH_CLAIM),
                ("wh_done", _WH_DONE), ("wh_retry", _WH_RETRY),
            )
        }

    # --- admission: chunks, idempotency, batches ----------------------------

    @staticmethod
    def _chunk_args(
        account: str,
        records: Sequence[tuple[str, bytes, str, int, bool]],
        batch_id: str | None,
        idem: tuple[str, str, str, bytes, bytes, int] | None,
        ts: str,
    ) -> tuple[list[str], list[str | bytes | int]]:
        mode, key, token, body_hash, response, ttl = idem or ("", "", "", b"", b"", 0)
        args: list[str | bytes | int] = [
            mode, token, body_hash, response, ttl,
            batch_key(batch_id) if batch_id else "",
            batch_owner_key(batch_id) if batch_id and mode != "next" else "",
            account, ts,
        ]
        flat: list[str | bytes] = []
        for message_id, packed, lane, parts, callbacks in records:
            flat += (message_id, packed, lane, str(parts), "1" if callbacks else "")
        # use_bin_type=False: Lua's cmsgpack reads every string type as a Lua string.
        args.append(msgpack.packb(flat, use_bin_type=False))
        return ([key] if mode else []), args

    async def enqueue_api(
        self,
        account: str,
        chunks: Sequence[Sequence[tuple[str, bytes, str, int, bool]]],
        *,
        batch_id: str | None = None,
        idem: tuple[str, str, bytes, bytes, int] | None = None,
        ts: float | None = None,
    ) -> tuple[bytes, bytes] | None:
        """Persist chunks of (id, packed Message, lane key, parts, callbacks wanted)
        in one pipelined round trip, one `_ENQUEUE_CHUNK` call per chunk.

        idem is (key, token, body hash, response, ttl). Returns None when this
        request's messages were queued, or (body hash, response) of the earlier
        request that owns the idempotency key — then nothing was queued.
        """
        script = self._api_scripts["chunk"]
        stamp = _ts(ts)
        calls = []
        for i, chunk in enumerate(chunks or [[]]):
            spec = None
            if idem is not None:
                key, token, body_hash, response, ttl = idem
                spec = ("first" if i == 0 else "next", key, token, body_hash,
                        response if i == 0 else b"", ttl)
            calls.append(self._chunk_args(account, chunk, batch_id, spec, stamp))
        # EVALSHA straight on the pipeline: redis-py's script registration would
        # cost a SCRIPT EXISTS round trip on every request. NOSCRIPT can only come
        # back for the first call (every call runs the same script), so nothing ran
        # and loading the script and resending is safe.
        for _attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            try:
                results = await pipe.execute()
            except NoScriptError:
                await self.redis.script_load(script.script)
                continue
            first = results[0]
            if isinstance(first, list):
                return first[0], first[1]
            return None
        raise NoScriptError("enqueue script could not be loaded")

    async def idempotent_response(self, key: str) -> tuple[bytes, bytes] | None:
        """(body hash, response) stored under an idempotency key, if any."""
        body_hash, response = await self.redis.hmget(key, "h", "r")
        return (body_hash, response) if body_hash is not None else None

    async def batch_owner(self, batch_id: str) -> str | None:
        owner = await self.redis.get(batch_owner_key(batch_id))
        return owner.decode() if owner else None

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
        found = await self.redis.smismember(optout_key(account), list(numbers))
        return [bool(x) for x in found]

    async def optout_page(self, account: str, cursor: int, count: int) -> tuple[int, list[str]]:
        nxt, members = await self.redis.sscan(optout_key(account), cursor, count=count)
        return int(nxt), sorted(m.decode() for m in members)

    # --- webhooks ----------------------------------------------------------

    async def ensure_events_group(self) -> None:
        try:
            await self.redis.xgroup_create(EVENTS_KEY, WH_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_events(
        self, consumer: str, count: int, block_ms: int, idle_ms: int
    ) -> list[tuple[bytes, str, str, float]]:
        """Status events as (entry id, message id, status, ts): first any a dead
        consumer left pending for idle_ms, else new ones."""
        _next, claimed, *_ = await self.redis.xautoclaim(
            EVENTS_KEY, WH_GROUP, consumer, min_idle_time=idle_ms, start_id="0", count=count
        )
        items = [(eid, f) for eid, f in claimed if f]
        if not items:
            got = await self.redis.xreadgroup(
                WH_GROUP, consumer, {EVENTS_KEY: ">"}, count=count, block=block_ms
            )
            for _stream, entries in got or ():
                items += [(eid, f) for eid, f in entries if f]
        return [
            (eid, f[b"m"].decode(), f[b"s"].decode(), float(f[b"t"])) for eid, f in items
        ]

    async def webhook_queue(
        self,
        items: Sequence[tuple[str, bytes]],
        ack: Sequence[bytes] = (),
        now: float | None = None,
    ) -> None:
        """Append (queue, packed entry) items to their queues; acknowledge event ids."""
        args: list[str | bytes | int] = [_ts(now), len(items)]
        for queue, entry in items:
            args += (wh_queue_key(queue), queue, entry)
        args += list(ack)
        await self._api_scripts["wh_queue"](keys=[], args=args)

    async def webhook_claim(
        self, now: float, lease: float, limit: int
    ) -> list[tuple[str, bytes, int]]:
        claim = self._api_scripts["wh_claim"]
        flat = await claim(keys=[], args=[_ts(now), _ts(now + lease), limit])
        return [
            (flat[i].decode(), flat[i + 1], int(flat[i + 2])) for i in range(0, len(flat), 3)
        ]

    async def webhook_done(self, queue: str, head: bytes, dead_reason: str = "") -> bool:
        done = self._api_scripts["wh_done"]
        return bool(await done(keys=[wh_queue_key(queue)], args=[queue, head, _ts(), dead_reason]))

    async def webhook_retry(
        self, queue: str, head: bytes, due_at: float, count: bool = True
    ) -> bool:
        retry = self._api_scripts["wh_retry"]
        args = [queue, head, _ts(due_at), "1" if count else ""]
        return bool(await retry(keys=[wh_queue_key(queue)], args=args))

    async def webhook_backlog(self) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(WH_DUE)
        pipe.xlen(WH_DEAD)
        due, dead = await pipe.execute()
        return {"queues": int(due), "dead": int(dead)}


def _entries(got: list | None) -> list[tuple[str, bytes, str]]:
    out = []
    for lane, items in got or ():
        lane_name = lane.decode() if isinstance(lane, bytes) else lane
        out += [(lane_name, eid, fields[b"m"].decode()) for eid, fields in items if fields]
    return out


def _state_from_hash(raw: dict[bytes, bytes]) -> MessageState:
    history = []
    for line in raw.get(b"h", b"").decode().splitlines():
        ts, status, detail = line.split("\t", 2)
        history.append((float(ts), status, detail))
    smsc_ids, part_states = {}, {}
    for name, value in raw.items():
        if name[:1] == b"i" and name[1:].isdigit():
            smsc_ids[int(name[1:])] = value.decode()
        elif name[:1] == b"p" and name[1:].isdigit():
            part_states[int(name[1:])] = value.decode()
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


# =============================================================================
# HTTP API and webhooks (issue 4): idempotency, batches, opt-outs, webhook queues
# =============================================================================
#
# More keys:
# - ``smsgw:idem:{<account>}:<sha256 of the key>`` hash — ``t`` token of the
#   request that owns it, ``h`` SHA-256 of its body, ``r`` its response; TTL
#   `http.idempotency_ttl`. Claimed by the same script call that persists the
#   first chunk, so two racing retries cannot both queue.
# - ``smsgw:bo:{<batch>}`` — the account a batch belongs to.
# - ``smsgw:optout:{<account>}`` set — the account's suppression list (E.164).
# - ``smsgw:wh:q:{<queue>}`` list — webhook deliveries waiting for one message
#   (queue = message id) or one MO message (``mo:<id>``), in order; only the
#   head is ever in flight, which keeps a message's statuses in order.
# - ``smsgw:wh:due`` sorted set — queue → when its head may be tried next
#   (a claim pushes it a lease into the future, so a dead worker's claim lapses).
# - ``smsgw:wh:try`` hash — queue → failed attempts of its current head.
# - ``smsgw:wh:dead`` stream — deliveries given up after `webhooks.max_age`.
# - consumer group ``webhooks`` on ``smsgw:events`` moves events into the queues.

IDEM_PREFIX = f"{PREFIX}idem:"
OPTOUT_PREFIX = f"{PREFIX}optout:"
WH_GROUP = "webhooks"
WH_DUE = f"{PREFIX}wh:due"
WH_TRY = f"{PREFIX}wh:try"
WH_DEAD = f"{PREFIX}wh:dead"


def idem_key(account: str, key_digest: str) -> str:
    return f"{IDEM_PREFIX}{{{account}}}:{key_digest}"


def batch_owner_key(batch_id: str) -> str:
    return f"{PREFIX}bo:{{{batch_id}}}"


def optout_key(account: str) -> str:
    return f"{OPTOUT_PREFIX}{{{account}}}"


def wh_queue_key(queue: str) -> str:
    return f"{PREFIX}wh:q:{{{queue}}}"


# Persist one chunk of admitted messages, optionally claiming an idempotency key.
# Writes the same fields as _ENQUEUE (tests/integration/test_api_store.py holds the
# two together) but is specialised for the API's chunks: one account and at most
# one batch per call, so the batch counters move once per chunk and the history
# text is built once.
# KEYS[1]: idempotency key (when ARGV[1] ~= '').
# ARGV: mode ('' | 'first' | 'next'), token, body hash, response, ttl,
#       batch key or '', batch owner key or '', account, ts, records: one msgpack
#       array of 5 values per message (id, packed record, lane, parts, callbacks '1'
#       or ''). One packed argument instead of five per message: redis-py spent a
#       fifth of a batch's admission time encoding arguments one by one.
# Returns the number queued, or {hash, response} of an earlier request with this key
# ('first'), or -1 when a later chunk finds the key owned by another request ('next').
_ENQUEUE_CHUNK = _FINAL_LUA + """
local mode = ARGV[1]
if mode == 'first' then
  local seen = redis.call('HMGET', KEYS[1], 'h', 'r')
  if seen[1] then return seen end
  redis.call('HSET', KEYS[1], 't', ARGV[2], 'h', ARGV[3], 'r', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
elseif mode == 'next' then
  if redis.call('HGET', KEYS[1], 't') ~= ARGV[2] then return -1 end
end
local b, owner, account, ts = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
if owner ~= '' then redis.call('SET', owner, account) end
local h = ts .. '\\taccepted\\t\\n' .. ts .. '\\tqueued\\t\\n'
local recs = cmsgpack.unpack(ARGV[10])
local n = 0
for i = 1, #recs, 5 do
  local id, r, lane, parts, cb = recs[i], recs[i + 1], recs[i + 2], recs[i + 3], recs[i + 4]
  local key = MSG_PREFIX .. '{' .. id .. '}'
  if cb ~= '' then
    if b ~= '' then
      redis.call('HSET', key, 'r', r, 's', 'queued', 'n', parts, 'a', account, 'h', h,
                 'w', '1', 'b', b)
    else
      redis.call('HSET', key, 'r', r, 's', 'queued', 'n', parts, 'a', account, 'h', h, 'w', '1')
    end
    redis.call('XADD', EVENTS, '*', 'm', id, 's', 'accepted', 't', ts)
    redis.call('XADD', EVENTS, '*', 'm', id, 's', 'queued', 't', ts)
  elseif b ~= '' then
    redis.call('HSET', key, 'r', r, 's', 'queued', 'n', parts, 'a', account, 'h', h, 'b', b)
  else
    redis.call('HSET', key, 'r', r, 's', 'queued', 'n', parts, 'a', account, 'h', h)
  end
  redis.call('XADD', lane, '*', 'm', id)
  n = n + 1
end
if b ~= '' and n > 0 then
  redis.call('HINCRBY', b, 'queued', n)
  redis.call('HINCRBY', b, 'total', n)
end
return n
"""

# Move status events into their messages' webhook queues and acknowledge them, in
# one step, so an event is queued exactly once even if the mover dies.
# KEYS: none. ARGV: now, n, n × (queue key, queue name, packed entry), then event ids.
_WH_QUEUE = f"""
local now, n = ARGV[1], tonumber(ARGV[2])
for i = 3, 2 + n * 3, 3 do
  redis.call('RPUSH', ARGV[i], ARGV[i + 2])
  redis.call('ZADD', '{WH_DUE}', 'NX', now, ARGV[i + 1])
end
local ids = {{}}
for i = 3 + n * 3, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids > 0 then
  redis.call('XACK', '{EVENTS_KEY}', '{WH_GROUP}', unpack(ids))
  redis.call('XDEL', '{EVENTS_KEY}', unpack(ids))
end
return n
"""

# Claim due queues: push each a lease into the future and return its head.
# ARGV: now, lease until, limit. Returns flat (queue, head, attempts) triples.
_WH_CLAIM = f"""
local due = redis.call('ZRANGEBYSCORE', '{WH_DUE}', '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local out = {{}}
for _, q in ipairs(due) do
  local head = redis.call('LINDEX', '{PREFIX}wh:q:{{' .. q .. '}}', 0)
  if head then
    redis.call('ZADD', '{WH_DUE}', ARGV[2], q)
    out[#out + 1] = q
    out[#out + 1] = head
    out[#out + 1] = redis.call('HGET', '{WH_TRY}', q) or '0'
  else
    redis.call('ZREM', '{WH_DUE}', q)
  end
end
return out
"""

# The head of a queue was delivered (or given up): pop it, unless another worker
# already did, and schedule the next entry now. KEYS: queue list.
# ARGV: queue, head, now, dead-letter reason or ''.
_WH_DONE = f"""
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[2] then return 0 end
redis.call('LPOP', KEYS[1])
redis.call('HDEL', '{WH_TRY}', ARGV[1])
if ARGV[4] ~= '' then
  redis.call('XADD', '{WH_DEAD}', 'MAXLEN', '~', 100000, '*', 'q', ARGV[1], 'e', ARGV[2],
             'why', ARGV[4])
end
if redis.call('LLEN', KEYS[1]) > 0 then
  redis.call('ZADD', '{WH_DUE}', ARGV[3], ARGV[1])
else
  redis.call('ZREM', '{WH_DUE}', ARGV[1])
end
return 1
"""

# A delivery failed: count the attempt (ARGV[4] == '1') and try again at ARGV[3].
# KEYS: queue list. ARGV: queue, head, due at, count.
_WH_RETRY = f"""
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[2] then return 0 end
if ARGV[4] == '1' then redis.call('HINCRBY', '{WH_TRY}', ARGV[1], 1) end
redis.call('ZADD', '{WH_DUE}', ARGV[3], ARGV[1])
return 1
"""


def api_record(m: Message) -> tuple[str, bytes, str, int, bool]:
    """A message as `Store.enqueue_api` takes it: the store picks its lane."""
    return m.id, m.pack(), lane_key(m.connectors[0], m.msg_class), m.parts, bool(m.callback_url)
