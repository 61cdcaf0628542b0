"""Lists: opt-outs, dead letters, and failed API keys and blocks per source
address."""

from __future__ import annotations

import time
from collections.abc import Sequence

from gateway.store.base import StoreBase, _ts
from gateway.store.keys import (
    AUTH_BLOCKED,
    authfail_key,
    dlq_key,
    msg_key,
    optout_key,
    shard_of,
)


class Lists(StoreBase):
    def _init_lists(self) -> None:
        self._dead_letter = self._register("dead_letter")
        self._auth_failed = self._register("auth_failed")

    # --- failed API keys per source address --------------------------------

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


    # --- dead letters ------------------------------------------------------

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
