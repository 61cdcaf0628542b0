"""Rate limits shared by every gateway process, kept in Redis (GCRA in Lua).

A process reserves a small slice of the rate at a time and spends it locally,
so a 5,000 TPS connector costs a few dozen Redis calls per second, not 5,000.
Within a process, waiters queue by priority (OTP before transactional before
marketing) and in arrival order within one priority; one refill loop asks Redis
for the next slice on behalf of all of them.
"""

from __future__ import annotations

import asyncio
import heapq

from gateway.store import Store


class SharedRate:
    def __init__(self, store: Store, name: str, rate: float) -> None:
        self.store = store
        self.name = name
        self.rate = rate
        # A slice of 50 ms of traffic at a time: small enough that processes
        # share fairly, large enough to keep Redis calls few.
        self.slice = max(1, int(rate * 0.05))
        self._tokens = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # heap
        self._arrivals = 0
        self._refill_task: asyncio.Task[None] | None = None

    async def acquire(self, priority: int = 0) -> None:
        """Wait until one unit (one submit_sm) may go; a lower `priority` goes first."""
        if self._tokens > 0 and not self._waiters:
            self._tokens -= 1
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._arrivals += 1
        heapq.heappush(self._waiters, (priority, self._arrivals, future))
        if self._refill_task is None:
            self._refill_task = loop.create_task(self._refill())
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._tokens += 1  # granted as the waiter went away: not spent
            raise

    def _hand_out(self) -> None:
        while self._tokens > 0 and self._waiters:
            future = heapq.heappop(self._waiters)[2]
            if not future.done():  # a cancelled waiter takes nothing
                self._tokens -= 1
                future.set_result(None)

    async def _refill(self) -> None:
        """Ask Redis for slices while anybody waits (one call at a time, not one
        per waiter), handing each out in priority order."""
        try:
            while True:
                self._hand_out()
                if not self._waiters:
                    return
                try:
                    granted, wait = await self.store.rate_acquire(
                        self.name, self.rate, self.slice, self.slice
                    )
                except Exception as exc:  # Redis unreachable: every waiter hears it
                    waiters, self._waiters = self._waiters, []
                    for _, _, future in waiters:
                        if not future.done():
                            future.set_exception(exc)
                    return
                self._tokens += granted
                if not granted:
                    # `wait` is until one unit is free: wait for a whole slice,
                    # or every slice comes back a unit at a time.
                    await asyncio.sleep(max(wait, 0.001) + (self.slice - 1) / self.rate)
        finally:
            self._refill_task = None
