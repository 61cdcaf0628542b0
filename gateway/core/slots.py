"""A counting semaphore for the per-message path.

`asyncio.Semaphore.acquire` is a coroutine that scans its waiters on every
call; a message passes two of them (the dispatcher's in-flight slots and the
bind's window), which cost more than encoding its submit_sm. Here taking a free
slot is a plain call, and a slot freed while someone waits is handed to the
oldest waiter directly, so no one wakes up to find it gone.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    def __init__(self, count: int) -> None:
        self.free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

    def take(self) -> bool:
        """Take a slot if one is free now, without waiting."""
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def acquire(self) -> None:
        if self.take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot, then cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter stays queued until here
                waiter.set_result(None)
                return
        self.free += 1
