"""Shared limits live in Redis, so every gateway process draws from one rate."""

from __future__ import annotations

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
