"""Rate limits shared by every gateway process, kept in Redis (GCRA in Lua).

A process reserves a small slice of the rate at a time and spends it locally,
so a 5,000 TPS connector costs a few dozen Redis calls per second, not 5,000.
"""

from __future__ import annotations

import asyncio

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
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until one unit (one submit_sm) may go."""
        while True:
            if self._tokens > 0:
                self._tokens -= 1
                return
            async with self._lock:
                if self._tokens > 0:
                    continue
                granted, wait = await self.store.rate_acquire(
                    self.name, self.rate, self.slice, self.slice
                )
                if granted:
                    self._tokens += granted
                    continue
            await asyncio.sleep(max(wait, 0.001))
