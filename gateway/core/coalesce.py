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

from gateway.core import logs

log = logs.get("smsgw.coalesce")

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(
        self, flush: Callable[[list[T]], Awaitable[Sequence[R]]], max_batch: int = 1000
    ) -> None:
        self._flush_fn = flush
        self._max_batch = max_batch
        self._items: list[T] = []
        # Per item: the future its submitter awaits, or the callback `push` was
        # given (or None), called with the result or the exception.
        self._futures: list[asyncio.Future[R] | Callable[[R | Exception], None] | None] = []
        self._running = False
        # The loop is looked up once: on Python 3.11 every get_running_loop()
        # makes a getpid() system call, and submit() runs once per message on
        # the single-message HTTP path.
        self._loop: asyncio.AbstractEventLoop | None = None

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = self._event_loop().create_future()
        self._add(item, future)
        return await future

    def push(self, item: T, on_done: Callable[[R | Exception], None] | None = None) -> None:
        """Queue an item without awaiting it: `on_done` (if any) is called with its
        result, or with the exception if the flush failed. Without `on_done` a
        failure is only logged: use that where a lost write is repaired anyway,
        such as a lane acknowledgement (the entry is reclaimed and found done)."""
        self._add(item, on_done)

    def _add(self, item: T, waiter: asyncio.Future[R] | Callable[[R | Exception], None] | None
             ) -> None:
        self._items.append(item)
        self._futures.append(waiter)
        if not self._running:
            self._running = True
            self._event_loop().create_task(self._drain())

    async def idle(self, timeout: float = 5.0) -> None:
        """Wait (at most `timeout` seconds) until everything queued is flushed."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._running and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(0)  # let this loop turn's other submitters join
            while self._items:
                items, futures = self._items[: self._max_batch], self._futures[: self._max_batch]
                del self._items[: self._max_batch], self._futures[: self._max_batch]
                try:
                    results = await self._flush_fn(items)
                except Exception as exc:
                    if None in futures:
                        log.warning("coalesced_write_failed", error=repr(exc))
                    for f in futures:
                        _settle(f, exc)
                    continue
                for f, result in zip(futures, results, strict=True):
                    _settle(f, result)
        finally:
            self._running = False


def _settle(
    waiter: asyncio.Future[R] | Callable[[R | Exception], None] | None, value: R | Exception
) -> None:
    """Hand one item's result (or the flush's exception) to whoever waits for it."""
    if isinstance(waiter, asyncio.Future):
        if waiter.done():
            return
        if isinstance(value, Exception):
            waiter.set_exception(value)
        else:
            waiter.set_result(value)
    elif waiter is not None:
        try:
            waiter(value)
        except Exception as exc:  # one bad callback must not strand the rest of the flush
            log.error("coalesced_callback_failed", error=repr(exc))
