"""The Redis key layout: the only place a key is spelled.

Every key the gateway writes starts with ``smsgw:`` (PREFIX). Modules inside
`gateway.store` and out (tests that inspect Redis, the load tools) take key
names from here; the Lua scripts (one `.lua` file each in gateway/store/lua/,
loaded by `gateway.store.scripts`) get every key (or the prefix of the keys
they build from ids, e.g. ``smsgw:{t}:m:``) as KEYS or ARGV from `shard_keys`
and the functions below, never by spelling a prefix themselves.

Shards (docs/cluster.md): the keys that a script touches together carry one
hash tag, ``{t}`` = ``{TAGS[k]}`` of shard k, so every script call falls in one
hash slot and runs on Redis Cluster. A deployment has `redis.shards` shards
(1..256); a message's shard is written into its id (`gateway.core.model`:
hex digits 12..13), so its keys are found from the id alone. ``B(k)`` below is
``smsgw:{TAGS[k]}:``.

Per shard k:
- ``B(k)m:<id>`` hash — ``r`` packed Message (account and parts live
  there), ``s`` status, ``h`` the history lines written at admission
  (``ts\\tstatus\\tdetail`` lines: accepted, then scheduled; for a message
  queued at once just the ts of both, accepted and queued), ``h<r>`` the line
  of the change to the status of rank r (HISTORY_RANK: statuses only move
  forward, so each is written once and the ranks order them), ``h<r>.<j>``
  the j-th line that changed nothing while the status had rank r (failover,
  resend), ``b`` batch key, ``w`` callbacks wanted (``<mask of EVENT_BITS>
  <receiver queue>``), ``c`` connector, ``n``
  parts as that connector cut the text (absent: 1), ``e`` error code,
  ``i<k>`` SMSC id of part k exactly as the SMSC wrote it in submit_sm_resp
  (what users see; the normalised form lives only in the correlation key),
  ``p<k>`` final state of part k, ``f<k>`` part k
  was resent on a fallback, ``d`` the lane entry the message left (deferred or
  rerouted out of an entry it shared).
- ``B(k)lane:<connector>:<class>`` stream, consumer group ``dispatch``;
  entries carry ``m``, one message id or up to LANE_GROUP ids of one enqueue
  call joined by commas, and ``k``, the index in the messages' route of the
  connector this lane belongs to (absent: 0). An entry is acknowledged when
  all its messages are done; parts already acknowledged are known from the
  ``i<k>`` fields, so a resend skips them. Acknowledged entries are trimmed
  behind the oldest entry in flight.
- ``B(k)depth`` hash — lane key → its messages, waiting or in flight.
- ``B(k)b:<batch>`` hash — counts by status; ``B(k)bo:<batch>`` — the
  account the batch belongs to. A batch has the shard of its id, and so do
  all its messages.
- ``B(k)expiry`` sorted set — members are the comma-joined ids of messages
  enqueued by one call whose expiry (end of validity plus the receipt grace)
  falls in the same second, scored by that second rounded up; the
  housekeeper expires those of them not final by then.
- ``B(k)delayed`` sorted set — ``<id>|<hop>|<lane>`` by due time: retries,
  scheduled sends and deferrals waiting to go back into a lane.
- ``B(k)dlq`` stream — messages that ended because their retries ran out.
- ``B(k)idem:<account>:<sha256 of the key>`` hash — ``t`` token of the
  request that owns it, ``h`` SHA-256 of its body, ``r`` its response; TTL
  `http.idempotency_ttl`; k = `idem_shard`, and the request's messages take
  that shard. Claimed by the same script call that persists the first chunk,
  so two racing retries cannot both queue.
- ``B(k)corr:<connector>:<smsc id>`` → ``<id>|<part>`` with a TTL: receipt
  correlation, the id in its per-connector normalised form (receipts are
  normalised the same way, so both meet here); or, prefixed with PARKED
  (``~``), a receipt that beat its submit_sm_resp. k = `name_shard` of the
  SMSC id (a receipt knows nothing else), so correlation and message are
  written by two script calls (docs/cluster.md).
- ``B(k)consumer:<consumer>`` — JSON identity of the worker reading lanes as
  that consumer (``gateway.core.processes.identity``: boot id, pid namespace,
  uid, pid, start time), one copy per shard (the take-over script compares it
  with the lanes of its shard), for a day, renewed by its housekeeper: what
  lets another worker tell that it is certainly dead and take its lane entries
  over at once (``Store.take_over``).
- ``B(k)wh:q:<queue>`` list — callbacks waiting for one receiver lane, in
  order: ``<id>|<status>|<ts>`` for a status (rendered when sent, from the
  message's hash), or WH_RENDERED + packed (url, account, body, created, event
  id) for an MO message. A queue is named ``<batch size>:<linger ms>:<lane>:
  <receiver id>:<account>`` (wh_queue_name): the scripts read the first two,
  the sender the rest. A message's callbacks all go to one lane of its
  receiver (its `w` field, set at admission) in its shard, and a queue has
  one request in flight at a time, so they arrive in order. A status change
  that the message's ``w`` asks for is queued by the same script that makes it.
- ``B(k)wh:due`` sorted set — queue → when it may be tried next (a claim
  pushes it a lease into the future, so a dead worker's claim lapses);
  ``B(k)wh:lease`` hash — queue → token of the claim that holds it (a settle
  with another token does nothing); ``B(k)wh:try`` hash — queue → failed
  attempts of its current head; ``B(k)wh:dead`` stream — deliveries given up
  after `webhooks.max_age`.
- ``B(k)mo:<conversation>`` hash — the parts of a concatenated MO message
  being reassembled (field: part number; ``done`` once it was queued), k =
  `name_shard` of it; ``B(k)mo:due`` sorted set — conversation → when to
  give up on its missing parts.

Outside the shards (one key per command):
- ``smsgw:optout:{<account>}`` set — the account's suppression list (E.164),
  read before the enqueue call.
- ``smsgw:rate:<name>`` — GCRA state (theoretical arrival time) of a shared limiter.
- ``smsgw:authfail:<source>`` — failed API keys from a source address in the
  current window (expires with it); ``smsgw:authblocked`` sorted set — sources
  blocked on every worker and host, by the time their block ends.
- ``smsgw:conn:<connector>:<worker>`` — a worker's JSON report of a connector
  (`smsgw status`), for 15 s; ``smsgw:metrics:<host>`` hash — each worker's
  metrics snapshot on that host (field: worker index).
"""

from __future__ import annotations

import functools
import zlib

from gateway.core.model import shard_of as shard_of  # a message's keys come from its id

PREFIX = "smsgw:"
# The consumer group that reads every lane.
GROUP = "dispatch"

# Shard k's hash tag. Chosen so that the slot of tag k falls in 64-slot bucket
# bitreverse8(k) of the 16,384: the first N tags spread evenly over the slots
# for any N that is a power of two, whichever masters own which ranges
# (`"0"`..`"15"` would cluster). tests/unit/test_store_layout.py checks it.
TAGS: tuple[str, ...] = (
    "cv", "bn", "cw", "bo", "kz", "c0", "dz", "c1", "ae", "5v", "ad", "5w", "fh", "d",
    "fi", "e", "cg", "7t", "cf", "7u", "b9", "er", "b8", "es", "3", "om", "2", "ol", "fy",
    "u", "fx", "t", "6u", "bf", "6t", "bg", "ds", "c8", "dr", "c9", "am", "ot", "al", "ou",
    "ia", "l", "fa", "m", "co", "bw", "cn", "bv", "b1", "ez", "b0", "jz", "4w", "f7", "4v",
    "f6", "fq", "gi", "fp", "gh", "cr", "bj", "cs", "bk", "1t", "c4", "1u", "c5", "aa",
    "ox", "g3", "oy", "fl", "gt", "fm", "a", "cc", "mz", "cb", "bz", "dn", "ev", "do",
    "ew", "7", "oi", "6", "oh", "3v", "q", "3w", "p", "cz", "bb", "lz", "bc", "dw", "eo",
    "dv", "en", "ai", "op", "ah", "oq", "fd", "h", "fe", "i", "ck", "bs", "cj", "br", "b5",
    "0u", "b4", "0t", "ax", "f3", "ay", "f2", "fu", "y", "ft", "x", "bl", "ct", "bm", "cu",
    "c2", "dy", "c3", "dx", "5t", "ag", "5u", "af", "f", "fj", "g", "fk", "7v", "ce", "7w",
    "cd", "ep", "dh", "eq", "di", "oo", "1", "on", "0", "w", "iz", "v", "fz", "bd", "6w",
    "be", "6v", "ei", "dq", "eh", "dp", "ov", "ao", "ow", "an", "n", "fb", "o", "fc", "bu",
    "cm", "bt", "cl", "ex", "b3", "ey", "b2", "f5", "9", "f4", "8", "a8", "fs", "a9", "fr",
    "bh", "cp", "bi", "cq", "c6", "1v", "c7", "1w", "oz", "ac", "qy", "ab", "b", "fn", "c",
    "fo", "by", "ca", "bx", "e3", "et", "dl", "eu", "dm", "f9", "5", "f8", "4", "s", "3t",
    "r", "3u", "d3", "cx", "ba", "cy", "em", "du", "el", "dt", "or", "ak", "os", "aj", "j",
    "ff", "k", "fg", "bq", "ci", "bp", "ch", "0w", "b7", "0v", "b6", "f1", "az", "f0",
    "nz", "go", "fw", "z", "fv",
)
MAX_SHARDS = len(TAGS)

OPTOUT_PREFIX = f"{PREFIX}optout:"
CONN_PREFIX = f"{PREFIX}conn:"
AUTH_BLOCKED = f"{PREFIX}authblocked"


@functools.cache  # a few per message on the hot path, of a small domain
def base(shard: int) -> str:
    return f"{PREFIX}{{{TAGS[shard]}}}:"


@functools.cache  # a few per message on the hot path, of a small domain
def msg_prefix(shard: int) -> str:
    return base(shard) + "m:"


def msg_key(message_id: str) -> str:
    return msg_prefix(shard_of(message_id)) + message_id


@functools.cache  # a few per message on the hot path, of a small domain
def lane_key(shard: int, connector: str, msg_class: str) -> str:
    return f"{base(shard)}lane:{connector}:{msg_class}"


def key_shard(key: str) -> int:
    """The shard of a shard key (from its tag)."""
    return _TAG_SHARD[key[len(PREFIX) + 1 : key.index("}")]]


def depth_key(shard: int) -> str:
    return base(shard) + "depth"


def expiry_key(shard: int) -> str:
    return base(shard) + "expiry"


def delayed_key(shard: int) -> str:
    return base(shard) + "delayed"


def dlq_key(shard: int) -> str:
    return base(shard) + "dlq"


def batch_key(batch_id: str) -> str:
    return f"{base(shard_of(batch_id))}b:{batch_id}"


def batch_owner_key(batch_id: str) -> str:
    return f"{base(shard_of(batch_id))}bo:{batch_id}"


def name_shard(name: str, shards: int) -> int:
    """The shard of something known by name only (an SMSC id, an MO
    conversation, a receiver queue, an idempotency key)."""
    return zlib.crc32(name.encode()) % shards


def idem_shard(account: str, key_digest: str, shards: int) -> int:
    return name_shard(f"{account}:{key_digest}", shards)


def idem_key(shard: int, account: str, key_digest: str) -> str:
    return f"{base(shard)}idem:{account}:{key_digest}"


def corr_key(shard: int, connector: str, match_id: str) -> str:
    return f"{base(shard)}corr:{connector}:{match_id}"


def consumer_key(shard: int, consumer: str) -> str:
    return f"{base(shard)}consumer:{consumer}"


def wh_queue_key(shard: int, queue: str) -> str:
    return f"{base(shard)}wh:q:{queue}"


def wh_due_key(shard: int) -> str:
    return base(shard) + "wh:due"


def wh_dead_key(shard: int) -> str:
    return base(shard) + "wh:dead"


def mo_parts_key(shard: int, conversation: str) -> str:
    return f"{base(shard)}mo:{conversation}"


def mo_due_key(shard: int) -> str:
    return base(shard) + "mo:due"


# The keys every shard script gets first, in this order (the Lua names them in
# gateway/store/lua/lib/shard.lua): prefixes of the keys built from ids or names, and
# the shard's own keys.
SHARD_KEY_NAMES = ("m:", "depth", "expiry", "delayed", "dlq", "wh:due", "wh:lease",
                   "wh:try", "wh:dead", "wh:q:", "b:", "bo:", "mo:due")


def shard_keys(shard: int) -> list[str]:
    b = base(shard)
    return [b + name for name in SHARD_KEY_NAMES]


def optout_key(account: str) -> str:
    return f"{OPTOUT_PREFIX}{{{account}}}"


def rate_key(name: str) -> str:
    return f"{PREFIX}rate:{name}"


def authfail_key(source: str) -> str:
    return f"{PREFIX}authfail:{source}"


def conn_key(connector: str, worker: str) -> str:
    return f"{CONN_PREFIX}{connector}:{worker}"


def metrics_key(host: str) -> str:
    return f"{PREFIX}metrics:{host}"


def wh_queue_name(batch_size: int, linger: float, lane: int, receiver: str, account: str
                  ) -> str:
    return f"{batch_size}:{round(linger * 1000)}:{lane}:{receiver}:{account}"


def wh_queue_receiver(queue: str) -> tuple[int, str, str]:
    """(batch size, receiver id, account) of a queue name."""
    size, _linger, _lane, receiver, account = queue.split(":", 4)
    return int(size), receiver, account


_TAG_SHARD = {tag: k for k, tag in enumerate(TAGS)}
