"""Lanes: the per-connector, per-class streams the dispatcher reads, with the
bookkeeping of the entries this process holds (an entry of several messages is
acknowledged when the last of them is done), reclaim and take-over of a dead
consumer's entries, and the consumers' identity records."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from redis.exceptions import ResponseError

from gateway.core.model import CLASSES as LANES
from gateway.store.base import StoreBase
from gateway.store.keys import (
    GROUP,
    consumer_key,
    depth_key,
    key_shard,
    lane_key,
)
from gateway.store.scripts import LANE_GROUP

# A worker's identity record lives this long unless its housekeeper renews it.
CONSUMER_TTL = 24 * 3600


class LaneEntry(NamedTuple):
    lane: str
    entry_id: bytes
    message_id: str
    hop: int  # index of this lane's connector in the message's route


class Lanes(StoreBase):
    cluster: bool

    def _init_lanes(self) -> None:
        self._read = self._register("read")
        self._ack = self._register("ack")
        self._keep_claimed = self._register("keep_claimed")
        self._reclaim = self._register("reclaim")
        self._take_over = self._register("take_over")
        self._forget_consumer = self._register("forget_consumer")
        # (lane, entry id) → [its messages handed out here and not done yet,
        # messages in the entry]
        self._in_flight: dict[tuple[str, bytes], list[int]] = {}
        # Entries one of whose messages failed here without being done: never
        # acknowledged nor kept claimed by this process, so a reclaim hands the
        # message out again.
        self._abandoned: set[tuple[str, bytes]] = set()

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
        trimmed behind the oldest entry still in flight (see ack.lua)."""
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
