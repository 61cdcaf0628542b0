"""Immediate takeover of a dead worker's lane entries.

A worker killed with `kill -9` (or an OOM kill, or a whole gateway killed and
started again) leaves the lane entries it had read pending under its consumer
name; the periodic reclaim hands them out only after `dispatch.claim_idle_ms`,
because an idle entry may also belong to a worker that is alive but slow, on
another host or in another container. A worker records its identity at start
(`gateway.core.processes.identity`, stored by `Store.record_consumer`), so another
worker can tell when it is *certainly* dead (`processes.certainly_dead`: same
boot and pid namespace, its pid gone or reused) and take its entries at once
(`Store.take_over`). Two sources name the dead:
- the supervisor, which starts a worker's replacement with `--claim-from`
  the dead worker's consumer name (it reaped that process itself);
- this worker's first start, which looks at every consumer of its
  connectors' lane groups (a whole gateway killed, then started again).
A consumer whose death is not certain is left to the reclaim.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import orjson

from gateway.core import logs
from gateway.core.processes import certainly_dead, identity
from gateway.store import LaneEntry, Store

log = logs.get("smsgw.takeover")


def dead(record: bytes | None, here: dict[str, str | int]) -> bool:
    """Whether an identity record (raw, as stored) shows a certainly dead process."""
    if not record:
        return False
    try:
        parsed = orjson.loads(record)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and certainly_dead(parsed, here)


class Takeover:
    """One worker's takeover, shared by its dispatchers: `prepare` (once per
    process, before any lane is read) records this worker's identity and finds
    the dead consumers; each dispatcher then calls `next` for its connector
    until it returns nothing. When every connector has taken all it could, the
    dead consumers' identity records are deleted."""

    def __init__(self, store: Store, consumer: str, connectors: Iterable[str],
                 claim_from: Sequence[str] = ()) -> None:
        self.store = store
        self.consumer = consumer
        self.connectors = list(connectors)
        self.claim_from = [c for c in claim_from if c != consumer]
        self.identity = identity()
        self.record = orjson.dumps(self.identity)
        self._lock = asyncio.Lock()
        self._prepared = False
        # dead consumer → its identity record as read (b"": none)
        self._dead: dict[str, bytes] = {}
        # connector → dead consumers it has not finished taking from
        self._left: dict[str, list[str]] = {}
        self._taken: dict[tuple[str, str], int] = {}  # (dead, connector) → messages

    def pending(self, connector: str) -> bool:
        return not self._prepared or bool(self._left.get(connector))

    async def prepare(self) -> None:
        async with self._lock:
            if self._prepared:
                return
            # Before any lane is read: a taker that finds this record knows the
            # name is in use (a reused pid) and takes nothing.
            await self.store.record_consumer(self.consumer, self.record)
            found = await self.store.group_consumers(self.connectors)
            names = sorted(set(self.claim_from) | found - {self.consumer})
            records = await self.store.consumer_records(names)
            for name, record in zip(names, records, strict=True):
                if dead(record, self.identity):
                    self._dead[name] = record or b""
                elif name in self.claim_from and not record:
                    # The supervisor reaped it; it died before recording itself.
                    self._dead[name] = b""
                elif name in self.claim_from:
                    log.warning("takeover_refused", dead_consumer=name,
                                reason="its identity record does not show it dead")
            self._left = {c: list(self._dead) for c in self.connectors}
            self._prepared = True
            if self._dead:
                log.info("takeover_started", consumers=sorted(self._dead))

    async def next(self, connector: str, count: int) -> list[LaneEntry]:
        """The next entries (about `count` messages per lane) of dead consumers
        in `connector`'s lanes; [] once there are none left."""
        await self.prepare()
        left = self._left.get(connector, [])
        while left:
            name = left[0]
            drained, entries = await self.store.take_over(
                name, connector, self.consumer, count, self._dead[name]
            )
            if drained is None:
                log.warning("takeover_refused", dead_consumer=name, connector=connector,
                            reason="a new process has recorded itself under that name")
                self._dead[name] = b""  # not ours to forget
            taken = self._taken.get((name, connector), 0) + len(entries)
            self._taken[(name, connector)] = taken
            if drained is not False:
                left.pop(0)
                if taken:
                    log.info("takeover_done", dead_consumer=name, connector=connector,
                             messages=taken)
            # Not drained: the call moved `count` entries away from the dead
            # consumer (all of them perhaps done, so none handed out), so
            # calling again makes progress.
            if entries:
                return entries
        await self._forget_if_done()
        return []

    async def _forget_if_done(self) -> None:
        if not self._dead or any(self._left.values()):
            return
        forgotten, self._dead = self._dead, {}
        for name, record in forgotten.items():
            await self.store.forget_consumer(name, record)
