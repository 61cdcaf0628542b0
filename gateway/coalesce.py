"""Coalesce many small awaits into one Redis round trip.

Callers `await coalescer.submit(item)` as if it were a single call; items
submitted while a flush is being prepared or is in flight go together in the
next one. Under load this turns thousands of per-message script calls a second
into a few dozen batched ones; when idle an item waits only for one loop turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(
        self, flush: Callable[[list[T]], Awaitable[Sequence[R]]], max_batch: int = 1000
    ) -> None:
        self._flush_fn = flush
        self._max_batch = max_batch
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []
        self._running = False

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._items.append(item)
        self._futures.append(future)
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(0)  # let this loop turn's other submitters join
            while self._items:
                items, futures = self._items[: self._max_batch], self._futures[: self._max_batch]
                del self._items[: self._max_batch], self._futures[: self._max_batch]
                try:
                    results = await self._flush_fn(items)
                except Exception as exc:
                    for f in futures:
                        if not f.done():
                            f.set_exception(exc)
                    continue
                for f, result in zip(futures, results, strict=True):
                    if not f.done():
                        f.set_result(result)
        finally:
            self._running = False
