"""Slots: free slots are taken without waiting, freed ones go to the oldest waiter."""

from __future__ import annotations

import asyncio

from gateway.core.slots import Slots


def test_take_release_and_fifo_hand_over() -> None:
    async def scenario() -> list[str]:
        slots = Slots(1)
        order: list[str] = []
        assert slots.take() and not slots.take()

        async def worker(name: str) -> None:
            await slots.acquire()
            order.append(name)
            await asyncio.sleep(0)
            slots.release()

        tasks = [asyncio.create_task(worker(n)) for n in "abc"]
        await asyncio.sleep(0)
        assert order == []  # all three wait for the one slot
        slots.release()
        await asyncio.gather(*tasks)
        assert slots.free == 1
        return order

    assert asyncio.run(scenario()) == ["a", "b", "c"]


def test_a_cancelled_waiter_neither_keeps_nor_loses_a_slot() -> None:
    async def scenario() -> int:
        slots = Slots(1)
        await slots.acquire()
        waiting = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        waiting.cancel()  # cancelled while waiting: skipped when a slot is freed
        await asyncio.gather(waiting, return_exceptions=True)
        handed = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        slots.release()  # handed to `handed` ...
        handed.cancel()  # ... which is cancelled before it runs: the slot comes back
        await asyncio.gather(handed, return_exceptions=True)
        return slots.free

    assert asyncio.run(scenario()) == 1
