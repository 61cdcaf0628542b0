"""Everything the gateway keeps in Redis: the scripts that update it and the
methods every other stage calls (none builds a key itself: the layout is
`gateway.store.keys`).

`Store` composes one class per job — messages and statuses (messages.py),
lanes (lanes.py), receipts and correlation (receipts.py), schedule and expiry
(schedule.py), notifications (notify.py), lists (lists.py), telemetry
(telemetry.py) — on `base.StoreBase`. Each registers the Lua scripts it calls,
one `.lua` file each under lua/ (gateway.store.scripts loads them).

Redis work per message is what limits throughput (loadtest/bench_store.py
measures it per stage), so the scripts read a message with one HMGET and write
it with one HSET, and what can be per call is: batch counts, expiry entries,
lane entries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import redis
from redis.exceptions import (
    ClusterDownError,
    RedisClusterUnreachableError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError as RedisError  # for callers: any failure of the store
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.core.model import CLASSES as LANES  # the lanes, read in this order: OTP first
from gateway.core.model import use_shards
from gateway.store import scripts
from gateway.store.client import Client, connect, is_cluster
from gateway.store.keys import shard_keys
from gateway.store.lanes import CONSUMER_TTL, LaneEntry
from gateway.store.lists import Lists
from gateway.store.messages import Messages, Record
from gateway.store.notify import Claim, Notify, Settle
from gateway.store.receipts import AckedPart, Receipts
from gateway.store.schedule import Schedule
from gateway.store.scripts import (
    HISTORY_RANK,
    LANE_GROUP,
    NK,
    PARKED,
    TRIM_SPAN_MS,
    WH_FIELDS,
    WH_RENDERED,
)
from gateway.store.telemetry import Telemetry

__all__ = [
    "CONSUMER_TTL", "HISTORY_RANK", "LANES", "LANE_GROUP", "NK", "PARKED", "REDIS_AWAY",
    "SHARD_LUA", "TRIM_SPAN_MS", "WH_FIELDS", "WH_RENDERED", "AckedPart", "Claim",
    "LaneEntry", "Record", "RedisError", "Settle", "Store", "probe",
]

# Errors that mean "Redis is away" (killed, restarting, loading, network):
# waiting and trying again is the cure. The built-in ConnectionError and
# TimeoutError are OSErrors.
REDIS_AWAY = (RedisConnectionError, RedisTimeoutError, OSError, ClusterDownError,
              RedisClusterUnreachableError)

# The head every shard script has (lib/shard.lua, with NK): it names
# keys.shard_keys(k) as KEYS[1..NK].
SHARD_LUA = scripts.load("lib/shard")


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


class Store(Messages, Lists, Receipts, Schedule, Notify, Telemetry):
    """The gateway's Redis: every stage's reads and writes, over `shards`
    shards of the key layout (gateway.store.keys). A call that touches
    messages of several shards makes one script call per shard, all in one
    round trip."""

    def __init__(self, client: Client, receipt_grace: float = 300.0,
                 shards: int = 1) -> None:
        self.redis = client
        # How long after the end of validity a receipt may still arrive before
        # the message is declared expired.
        self.receipt_grace = receipt_grace
        self.shards = shards
        use_shards(shards)  # new ids spread over these shards
        # On Redis Cluster a blocking read cannot span shards (see read_lanes).
        self.cluster = is_cluster(client)
        self._shard_keys = [shard_keys(k) for k in range(shards)]
        self.registered = {}
        self._init_messages()
        self._init_lanes()
        self._init_receipts()
        self._init_schedule()
        self._init_notify()
        self._init_lists()

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
