"""Shared limits live in Redis, so every gateway process draws from one rate."""

from __future__ import annotations

import asyncio

from gateway.dispatch.rates import SharedRate
from gateway.store import Store


async def test_gcra_grants_the_burst_then_asks_to_wait(store: Store) -> None:
    granted, wait = await store.rate_acquire("connector:x", rate=10, burst=5, n=20)
    assert granted == 5 and wait == 0
    granted, wait = await store.rate_acquire("connector:x", rate=10, burst=5, n=1)
    assert granted == 0 and 0 < wait <= 0.1


async def test_two_processes_share_one_rate(store: Store, redis_url: str) -> None:
    other = Store.from_url(redis_url)  # a second client, as another worker would be
    try:
        # One unit a second: the burst is gone for the other process however slow
        # this machine is between the two calls (less than a second, surely).
        a, _ = await store.rate_acquire("connector:y", rate=1, burst=10, n=10)
        b, wait = await other.rate_acquire("connector:y", rate=1, burst=10, n=10)
        assert a == 10 and b == 0 and wait > 0
    finally:
        await other.close()


async def test_limits_are_independent_per_name(store: Store) -> None:
    assert (await store.rate_acquire("carrier:A", 1, 1, 1))[0] == 1
    assert (await store.rate_acquire("carrier:B", 1, 1, 1))[0] == 1
    assert (await store.rate_acquire("carrier:A", 1, 1, 1))[0] == 0


async def test_waiters_are_served_by_priority_then_in_arrival_order(store: Store) -> None:
    """At 20 a second (a slice of one), marketing that queued first still lets an
    OTP that arrives later go next."""
    rate = SharedRate(store, "connector:prio", 20)
    order: list[str] = []

    async def take(name: str, priority: int) -> None:
        await rate.acquire(priority)
        order.append(name)

    marketing = [asyncio.create_task(take(f"m{i}", 2)) for i in range(8)]
    for _ in range(200):  # until two have gone (bounded: 0.1 s of traffic)
        if len(order) >= 2:
            break
        await asyncio.sleep(0.01)
    otp = asyncio.create_task(take("otp", 0))
    transactional = asyncio.create_task(take("tx", 1))
    await asyncio.wait_for(asyncio.gather(*marketing, otp, transactional), 10)
    assert len(order) == 10
    i = order.index("otp")
    assert i <= 3 and order[i + 1] == "tx", order
    assert [m for m in order if m.startswith("m")] == [f"m{i}" for i in range(8)]


async def test_many_waiters_cost_one_redis_call_per_slice_not_per_waiter(store: Store) -> None:
    """500 waiters at 400 a second (slices of 20): Redis is asked about once per
    slice and once per wait between slices, not by every waiter each time."""
    async def script_calls() -> int:
        stats = await store.redis.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    rate = SharedRate(store, "connector:herd", 400)
    before = await script_calls()
    await asyncio.wait_for(asyncio.gather(*(rate.acquire(2) for _ in range(500))), 20)
    calls = await script_calls() - before
    assert calls <= 3 * 500 // rate.slice, calls


async def test_a_cancelled_waiter_takes_no_unit(store: Store) -> None:
    rate = SharedRate(store, "connector:cancel", 1)  # one unit, then a second's wait
    await rate.acquire()
    gone = asyncio.create_task(rate.acquire())
    await asyncio.sleep(0.05)
    gone.cancel()
    await asyncio.wait_for(rate.acquire(), 5)  # the next unit is this waiter's
    assert gone.cancelled()
