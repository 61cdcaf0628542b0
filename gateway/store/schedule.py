"""Schedule and expiry: failover to the next connector, deferral and its
return to the lane, scheduled sends, expiry of messages past their validity,
a failed part's resend, and the shared rate limiters."""

from __future__ import annotations

import time

from gateway.core.model import Message
from gateway.store.base import _ts
from gateway.store.keys import (
    delayed_key,
    key_shard,
    lane_key,
    msg_key,
    rate_key,
    shard_of,
)
from gateway.store.lanes import LaneEntry, Lanes


class Schedule(Lanes):
    """Delivery's changes of plan (failover and deferral take a message out of
    its lane entry, hence the lanes' bookkeeping beneath)."""

    def _init_schedule(self) -> None:
        self._reroute = self._register("reroute")
        self._defer = self._register("defer")
        self._promote = self._register("promote")
        self._expire_due = self._register("expire_due")
        self._resend_part = self._register("resend_part")
        self._gcra = self._register("gcra")

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


    async def delayed_count(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for k in range(self.shards):
            pipe.zcard(delayed_key(k))
        return sum(int(n) for n in await pipe.execute())
