"""Notifications: the webhook queues (status callbacks are queued by the
status scripts; MO messages here), their lease, settle and backlog, and the
reassembly of concatenated MO messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from gateway.store.base import StoreBase, _ts
from gateway.store.keys import (
    mo_due_key,
    mo_parts_key,
    name_shard,
    wh_dead_key,
    wh_due_key,
    wh_queue_key,
)
from gateway.store.scripts import WH_FIELDS, WH_RENDERED


class Notify(StoreBase):
    def _init_notify(self) -> None:
        self._wh_push = self._register("wh_push")
        self._wh_claim = self._register("wh_claim")
        self._wh_settle = self._register("wh_settle")
        self._mo_part = self._register("mo_part")
        self._mo_done = self._register("mo_done")
        self._rotate = 0  # the shard webhook claims start with

    async def webhook_push(self, queue: str, entry: bytes, now: float | None = None) -> None:
        """Append a rendered delivery (an MO message: WH_RENDERED + packed) to a
        receiver queue (in the shard of the queue's name, so one receiver's
        MO messages stay in order). Status callbacks are pushed by the status
        scripts."""
        k = name_shard(queue, self.shards)
        await self._call(self._wh_push, k, (), [wh_queue_key(k, queue), queue, entry, _ts(now)])

    async def mo_part(self, conversation: str, seq: int, total: int, text: bytes,
                      due: float, ttl: int) -> dict[int, bytes] | None:
        """Keep part `seq` of `total` of an MO message; all its parts by number
        once every one is in (until `mo_done`), else None."""
        k = name_shard(conversation, self.shards)
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
        k = name_shard(conversation, self.shards)
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


def _claims(shard: int, flat: Sequence[bytes]) -> list[Claim]:
    """The Claims of one shard's wh_claim.lua reply."""
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
