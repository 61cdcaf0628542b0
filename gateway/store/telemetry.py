"""Telemetry: each worker's connector reports and metrics snapshots, for
`smsgw status` and each host's metrics."""

from __future__ import annotations

import time

import orjson

from gateway.store.base import StoreBase
from gateway.store.keys import (
    CONN_PREFIX,
    conn_key,
    metrics_key,
)


class Telemetry(StoreBase):
    async def report_connector(self, worker: str, name: str, report: dict[str, object],
                               ttl: int = 15) -> None:
        await self.redis.set(conn_key(name, worker), orjson.dumps(report), ex=ttl)

    async def publish_metrics(self, host: str, worker: int, snapshot: bytes,
                              ttl: int = 60) -> None:
        """Store this worker's metrics snapshot beside its siblings' on `host`."""
        key = metrics_key(host)
        stamped = f"{time.time():.3f}|".encode() + snapshot
        await self.redis.pipeline(transaction=False).hset(key, str(worker), stamped).expire(
            key, ttl
        ).execute()

    async def host_metrics(self, host: str, max_age: float = 30.0) -> list[bytes]:
        """The snapshots of `host`'s workers published within `max_age` seconds
        (older ones are of workers that are gone, and are dropped)."""
        key = metrics_key(host)
        now, fresh, stale = time.time(), [], []
        for worker, stamped in (await self.redis.hgetall(key)).items():
            at, _, snapshot = stamped.partition(b"|")
            if now - float(at) <= max_age:
                fresh.append(snapshot)
            else:
                stale.append(worker)
        if stale:
            await self.redis.hdel(key, *stale)
        return fresh

    async def connector_reports(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        async for key in self.redis.scan_iter(match=f"{CONN_PREFIX}*", count=1000):
            raw = await self.redis.get(key)
            if raw:
                name, _, worker = key.decode().removeprefix(CONN_PREFIX).partition(":")
                out.setdefault(name, {})[worker] = orjson.loads(raw)
        return out
