"""Taking a dead worker's lane entries over at once, on a real Redis: only a
consumer that is certainly dead loses its entries, and what it had finished is
not handed out again."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import orjson
import pytest

from gateway.core.processes import identity
from gateway.dispatch.takeover import Takeover
from gateway.store import Store
from gateway.store.keys import GROUP, consumer_key, msg_key
from tests.integration.test_store import message


def dead_identity() -> bytes:
    """The identity record of a process that has ended (started, recorded, reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = identity(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    return orjson.dumps(record)


@pytest.fixture
async def other(redis_url: str) -> AsyncIterator[Store]:
    """A second worker's store (the one that takes over)."""
    s = Store.from_url(redis_url)
    try:
        yield s
    finally:
        await s.close()


async def consumers(store: Store, lane: str) -> dict[str, int]:
    return {c["name"].decode(): c["pending"]
            for c in await store.redis.xinfo_consumers(lane, GROUP)}


async def read_by(store: Store, consumer: str, n: int) -> list:  # type: ignore[type-arg]
    """`n` messages, one request each (an entry each), read by `consumer`."""
    await store.ensure_lanes("sim")
    ms = [message() for _ in range(n)]
    for m in ms:
        await store.enqueue([m])
    entries = await store.read_lanes("sim", consumer, n, 10)
    assert [e.message_id for e in entries] == [m.id for m in ms]
    return entries


async def take_all(takeover: Takeover, connector: str = "sim") -> list[str]:
    taken: list[str] = []
    for _ in range(100):
        entries = await takeover.next(connector, 10)
        if not entries:
            return taken
        taken += [e.message_id for e in entries]
    raise AssertionError("the takeover did not end")


async def test_a_dead_workers_entries_are_taken_over_at_once_and_it_leaves_the_group(
    store: Store, other: Store
) -> None:
    entries = await read_by(store, "host-dead", 25)
    record = dead_identity()
    await store.record_consumer("host-dead", record)
    takeover = Takeover(other, "host-new", ["sim"])
    taken = await take_all(takeover)  # 25 entries, 10 messages a call: three calls
    assert sorted(taken) == sorted(e.message_id for e in entries)
    lane = entries[0].lane
    assert await consumers(store, lane) == {"host-new": 25}
    assert await store.redis.get(consumer_key(0, "host-dead")) is None
    # the taker's own record is what it wrote before reading anything
    assert await store.redis.get(consumer_key(0, "host-new")) == takeover.record
    await other.ack([(e.lane, e.entry_id) for e in entries])
    assert (await store.redis.xpending(lane, GROUP))["pending"] == 0


async def test_a_live_consumer_keeps_its_entries(store: Store, other: Store) -> None:
    entries = await read_by(store, "host-live", 3)
    await store.record_consumer("host-live", orjson.dumps(identity()))  # this very process
    assert await take_all(Takeover(other, "host-new", ["sim"])) == []
    assert await consumers(store, entries[0].lane) == {"host-live": 3}
    assert await store.redis.get(consumer_key(0, "host-live")) is not None


async def test_a_consumer_recorded_on_another_boot_or_host_is_left_to_the_reclaim(
    store: Store, other: Store
) -> None:
    entries = await read_by(store, "elsewhere-1", 2)
    await read_by(store, "container-1", 2)
    await read_by(store, "unrecorded-1", 2)
    gone = orjson.loads(dead_identity())
    await store.record_consumer("elsewhere-1", orjson.dumps({**gone, "boot": "another-boot"}))
    await store.record_consumer("container-1",
                                orjson.dumps({**gone, "pidns": "pid:[4026539999]"}))
    assert await take_all(Takeover(other, "host-new", ["sim"])) == []
    assert await consumers(store, entries[0].lane) == {
        "elsewhere-1": 2, "container-1": 2, "unrecorded-1": 2}
    # the reclaim still takes them once they are idle
    await asyncio.sleep(0.3)
    assert len(await other.reclaim("sim", "host-new", 200, 320)) == 6


async def test_what_the_dead_worker_had_finished_is_not_handed_out_again(
    store: Store, other: Store
) -> None:
    await store.ensure_lanes("sim")
    ms = [message() for _ in range(4)]
    await store.enqueue(ms)  # one request: one shared entry
    done_alone = message()
    await store.enqueue([done_alone])
    all_left = [message(), message()]
    await store.enqueue(all_left)
    a, b, c, d, alone, left1, left2 = await store.read_lanes("sim", "host-dead", 10, 10)
    await store.defer(a, time.time() + 3600)
    await store.reroute(b, ms[1], 0, "failover sim -> sim")  # (same lane, for the test)
    await store.ack([(c.lane, c.entry_id), (alone.lane, alone.entry_id)])
    # Every message of that entry left it, but the worker died before the entry
    # was acknowledged: both carry the mark a deferral or reroute leaves.
    for e in (left1, left2):
        await store.redis.hset(msg_key(e.message_id), "d", e.entry_id)
    await store.record_consumer("host-dead", dead_identity())
    taken = await Takeover(other, "host-new", ["sim"]).next("sim", 100)
    # The shared entry without a and b, which had left it; c comes back with d,
    # as from a reclaim (its parts' SMSC ids are stored, so the dispatcher sends
    # nothing again). `alone` was acknowledged; the entry every message had left
    # is acknowledged now.
    assert sorted(e.message_id for e in taken) == sorted([c.message_id, d.message_id])
    assert {e.entry_id for e in taken} == {a.entry_id}
    assert await consumers(store, a.lane) == {"host-new": 1}
    [moved] = await other.read_lanes("sim", "host-new", 10, 10)  # the rerouted one
    assert moved.message_id == ms[1].id
    await other.ack([(e.lane, e.entry_id) for e in [*taken, moved]])
    assert (await other.redis.xpending(a.lane, GROUP))["pending"] == 0
    assert (await other.lane_depths(["sim"]))["sim:transactional"] == 0


async def test_nothing_is_taken_from_a_new_process_that_took_the_name(
    store: Store, other: Store
) -> None:
    """The pid was reused by a new worker, which recorded itself (before it read
    anything) after the taker had decided the old one was dead."""
    entries = await read_by(store, "host-7", 2)
    old = dead_identity()
    await store.record_consumer("host-7", old)
    await store.record_consumer("host-7", orjson.dumps(identity()))  # the new one
    assert await other.take_over("host-7", "sim", "host-new", 10, old) == (None, [])
    assert await consumers(store, entries[0].lane) == {"host-7": 2}
    assert not await other.forget_consumer("host-7", old)
    assert await store.redis.get(consumer_key(0, "host-7")) == orjson.dumps(identity())


async def test_two_workers_taking_over_together_share_the_entries_without_overlap(
    store: Store, other: Store, redis_url: str
) -> None:
    entries = await read_by(store, "host-dead", 60)
    await store.record_consumer("host-dead", dead_identity())
    third = Store.from_url(redis_url)
    try:
        one, two = await asyncio.gather(
            take_all(Takeover(other, "host-a", ["sim"])),
            take_all(Takeover(third, "host-b", ["sim"])),
        )
    finally:
        await third.close()
    assert not set(one) & set(two)
    assert sorted(one + two) == sorted(e.message_id for e in entries)
    assert "host-dead" not in await consumers(store, entries[0].lane)


async def test_the_supervisors_word_covers_a_worker_killed_before_it_recorded_itself(
    store: Store, other: Store
) -> None:
    entries = await read_by(store, "host-early", 2)
    assert await take_all(Takeover(other, "host-new", ["sim"])) == []  # no record: unsure
    taken = await take_all(Takeover(other, "host-new", ["sim"], claim_from=["host-early"]))
    assert sorted(taken) == sorted(e.message_id for e in entries)
