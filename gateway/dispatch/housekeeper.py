"""Housekeeping every worker runs: due deferrals back into their lanes, expiry,
and this worker's claim on the lane entries it still works on."""

from __future__ import annotations

import asyncio
import time

from gateway.core import logs, metrics
from gateway.core.model import EXPIRED
from gateway.store import Store

log = logs.get("smsgw.housekeeper")


class Housekeeper:
    """Moves due deferrals back into their lanes, expires messages whose
    validity (plus receipt grace) has passed, and keeps this worker's claim on
    the lane entries it is still working on (`Store.keep_claimed`) and its
    identity record alive (`Store.record_consumer`). Every worker runs one; the Lua
    behind both steps is atomic, so they never step on each other."""

    def __init__(self, store: Store, interval: float = 0.5, consumer: str = "",
                 claim_idle_ms: int = 30_000, retention: int = 0,
                 identity: bytes = b"") -> None:
        self.store = store
        # This worker's identity record (gateway/dispatch/takeover.py), renewed with the claims.
        self.identity = identity
        self.retention = retention
        self.interval = interval
        self.consumer = consumer
        # Held entries are touched three times per reclaim threshold.
        self.keep_every = claim_idle_ms / 3000
        # The identity record lives a day (CONSUMER_TTL): renewed at least hourly.
        self.renew_every = min(self.keep_every, 3600.0)
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        next_keep = time.monotonic() + self.keep_every
        next_renew = time.monotonic() + self.renew_every
        while not self._stopping:
            try:
                await self.store.promote_due()
                for _ in await self.store.expire_due(retention=self.retention):
                    metrics.count_status(EXPIRED)
                if self.consumer and time.monotonic() >= next_keep:
                    next_keep = time.monotonic() + self.keep_every
                    await self.store.keep_claimed(self.consumer)
                if self.identity and time.monotonic() >= next_renew:
                    next_renew = time.monotonic() + self.renew_every
                    await self.store.record_consumer(self.consumer, self.identity)
            except Exception as exc:  # Redis restarting: try again next round
                log.warning("housekeeping_failed", error=repr(exc))
            await asyncio.sleep(self.interval)
