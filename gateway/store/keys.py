"""The Redis key layout: the only place a key is spelled.

Every key the gateway writes starts with ``smsgw:`` (PREFIX). Modules inside
`gateway.store` and out (tests that inspect Redis, the load tools) take key
names from here; the Lua scripts (gateway/store/__init__.py) get the prefixes
of the keys they build from these constants.

Layout (``{...}`` is the hash tag that keeps a message's keys in one slot):
- ``smsgw:m:{<id>}`` hash — ``r`` packed Message (account and parts live
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
- ``smsgw:lane:{<connector>}:<class>`` stream, consumer group ``dispatch``;
  entries carry ``m``, one message id or up to LANE_GROUP ids of one enqueue
  call joined by commas, and ``k``, the index in the messages' route of the
  connector this lane belongs to (absent: 0). An entry is acknowledged when
  all its messages are done; parts already acknowledged are known from the
  ``i<k>`` fields, so a resend skips them. Acknowledged entries are trimmed
  behind the oldest entry in flight.
- ``smsgw:depth`` hash — lane key → its messages, waiting or in flight.
- ``smsgw:corr:<connector>:<smsc id>`` → ``<id>|<part>`` with a TTL: receipt
  correlation, the id in its per-connector normalised form (receipts are
  normalised the same way, so both meet here); or, prefixed with
  PARKED (``~``), a receipt that beat its submit_sm_resp.
- ``smsgw:b:{<batch>}`` hash — counts by status.
- ``smsgw:expiry`` sorted set — members are the comma-joined ids of messages
  enqueued by one call whose expiry (end of validity plus the receipt grace)
  falls in the same second, scored by that second rounded up; the
  housekeeper expires those of them not final by then.
- ``smsgw:delayed`` sorted set — ``<id>|<hop>|<lane>`` by due time: retries,
  scheduled sends and deferrals waiting to go back into a lane.
- ``smsgw:dlq`` stream — messages that ended because their retries ran out.
- ``smsgw:rate:<name>`` — GCRA state (theoretical arrival time) of a shared limiter.
- ``smsgw:consumer:<consumer>`` — JSON identity of the worker reading lanes as
  that consumer (``gateway.core.processes.identity``: boot id, pid namespace, uid,
  pid, start time), for a day, renewed by its housekeeper: what lets another
  worker tell that it is certainly dead and take its lane entries over at once
  (``Store.take_over``).
- ``smsgw:wh:*`` — status callbacks and MO webhooks waiting for their
  receivers (the ``smsgw:wh:`` keys below). A status change that the
  message's ``w`` asks for is queued by the same script that makes it.
- ``smsgw:idem:{<account>}:<sha256 of the key>`` hash — ``t`` token of the
  request that owns it, ``h`` SHA-256 of its body, ``r`` its response; TTL
  `http.idempotency_ttl`. Claimed by the same script call that persists the
  first chunk, so two racing retries cannot both queue.
- ``smsgw:bo:{<batch>}`` — the account a batch belongs to.
- ``smsgw:optout:{<account>}`` set — the account's suppression list (E.164).
- ``smsgw:wh:q:{<queue>}`` list — callbacks waiting for one receiver lane, in
  order: ``<id>|<status>|<ts>`` for a status (rendered when sent, from the
  message's hash), or WH_RENDERED + packed (url, account, body, created, event
  id) for an MO message. A queue is named ``<batch size>:<linger ms>:<lane>:
  <receiver id>:<account>`` (wh_queue_name): the scripts read the first two,
  the sender the rest. A message's callbacks all go to one lane of its
  receiver (its `w` field, set at admission), and a lane has one request in
  flight at a time, so they arrive in order.
- ``smsgw:wh:due`` sorted set — queue → when it may be tried next (a claim
  pushes it a lease into the future, so a dead worker's claim lapses).
- ``smsgw:wh:lease`` hash — queue → token of the claim that holds it; a settle
  with another token does nothing.
- ``smsgw:wh:try`` hash — queue → failed attempts of its current head.
- ``smsgw:wh:dead`` stream — deliveries given up after `webhooks.max_age`.
- ``smsgw:mo:{<conversation>}`` hash — the parts of a concatenated MO message
  being reassembled (field: part number; ``done`` once it was queued), and
  ``smsgw:mo:due`` sorted set — conversation → when to give up on its missing
  parts.
- ``smsgw:authfail:<source>`` — failed API keys from a source address in the
  current window (expires with it); ``smsgw:authblocked`` sorted set — sources
  blocked on every worker and host, by the time their block ends.
- ``smsgw:conn:<connector>:<worker>`` — a worker's JSON report of a connector
  (`smsgw status`), for 15 s; ``smsgw:metrics:<host>`` hash — each worker's
  metrics snapshot on that host (field: worker index).

The Lua scripts build message and batch keys from ids they are given; on a
single Redis server that is fine. Redis Cluster support (declaring every key
to the script) is tracked in docs/architecture.md.
"""

from __future__ import annotations

PREFIX = "smsgw:"
# The consumer group that reads every lane.
GROUP = "dispatch"

# Message keys, and the Lua's way to build one from an id: MSG_PREFIX + "{" + id + "}".
MSG_PREFIX = f"{PREFIX}m:"
BATCH_PREFIX = f"{PREFIX}b:"
BATCH_OWNER_PREFIX = f"{PREFIX}bo:"
IDEM_PREFIX = f"{PREFIX}idem:"
OPTOUT_PREFIX = f"{PREFIX}optout:"
WH_QUEUE_PREFIX = f"{PREFIX}wh:q:"
CONN_PREFIX = f"{PREFIX}conn:"

EXPIRY_KEY = f"{PREFIX}expiry"
DELAYED_KEY = f"{PREFIX}delayed"
DLQ_KEY = f"{PREFIX}dlq"
DEPTH_KEY = f"{PREFIX}depth"
AUTH_BLOCKED = f"{PREFIX}authblocked"
WH_DUE = f"{PREFIX}wh:due"
WH_LEASE = f"{PREFIX}wh:lease"
WH_TRY = f"{PREFIX}wh:try"
WH_DEAD = f"{PREFIX}wh:dead"
MO_DUE = f"{PREFIX}mo:due"


def msg_key(message_id: str) -> str:
    return f"{MSG_PREFIX}{{{message_id}}}"


def lane_key(connector: str, msg_class: str) -> str:
    return f"{PREFIX}lane:{{{connector}}}:{msg_class}"


def corr_key(connector: str, smsc_id: str) -> str:
    return f"{PREFIX}corr:{connector}:{smsc_id}"


def batch_key(batch_id: str) -> str:
    return f"{BATCH_PREFIX}{{{batch_id}}}"


def batch_owner_key(batch_id: str) -> str:
    return f"{BATCH_OWNER_PREFIX}{{{batch_id}}}"


def consumer_key(consumer: str) -> str:
    return f"{PREFIX}consumer:{consumer}"


def idem_key(account: str, key_digest: str) -> str:
    return f"{IDEM_PREFIX}{{{account}}}:{key_digest}"


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


def wh_queue_key(queue: str) -> str:
    return f"{WH_QUEUE_PREFIX}{{{queue}}}"


def mo_parts_key(conversation: str) -> str:
    return f"{PREFIX}mo:{{{conversation}}}"


def wh_queue_name(batch_size: int, linger: float, lane: int, receiver: str, account: str
                  ) -> str:
    return f"{batch_size}:{round(linger * 1000)}:{lane}:{receiver}:{account}"


def wh_queue_receiver(queue: str) -> tuple[int, str, str]:
    """(batch size, receiver id, account) of a queue name."""
    size, _linger, _lane, receiver, account = queue.split(":", 4)
    return int(size), receiver, account
