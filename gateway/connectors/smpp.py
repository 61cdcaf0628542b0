"""Outbound SMPP connector: several transceiver binds to one SMSC, a window of
outstanding submit_sm per bind, enquire_link, and reconnects with jittered
exponential backoff (so a carrier outage does not become a reconnect storm).

It stands on our own `protocols.smpp` through `gateway.smpp_io`; see
docs/architecture.md for why not aiosmpplib or smpp34 on this path.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from gateway import logs, metrics
from gateway.config import ConnectorSettings
from gateway.smpp_io import SmppProtocol
from protocols.smpp import BindTransceiver, CommandStatus, DeliverSm, Role

log = logs.get("smsgw.connector")

DeliverHandler = Callable[[str, DeliverSm], Awaitable[int]]


class BindFailed(ConnectionError):
    pass


class _Bind(SmppProtocol):
    role = Role.ESME

    def __init__(self, connector: SmppConnector) -> None:
        super().__init__()
        self.connector = connector
        self.window = asyncio.Semaphore(connector.settings.window)

    def on_request(self, pdu: Any) -> None:
        if isinstance(pdu, DeliverSm):
            # Acknowledge only after the receipt is stored: an SMSC resends
            # receipts we did not acknowledge, so nothing is lost if we die here.
            asyncio.get_running_loop().create_task(self._deliver(pdu))
        else:
            super().on_request(pdu)

    async def _deliver(self, pdu: DeliverSm) -> None:
        try:
            status = await self.connector.on_deliver(self.connector.name, pdu)
        except Exception as exc:  # keep the bind alive; the SMSC will retry
            log.error("deliver_sm_failed", connector=self.connector.name, error=repr(exc))
            status = CommandStatus.ESME_RSYSERR
        if self.transport is not None:
            self.send(pdu.make_resp(command_status=status))


class SmppConnector:
    def __init__(self, name: str, settings: ConnectorSettings, on_deliver: DeliverHandler) -> None:
        self.name = name
        self.settings = settings
        self.on_deliver = on_deliver
        self.binds: list[_Bind] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self._next = 0
        self._stopping = False

    @property
    def up(self) -> bool:
        return bool(self.binds)

    def start(self) -> None:
        for index in range(self.settings.binds):
            self._tasks.append(asyncio.create_task(self._keep_bound(index)))

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(b.unbind() for b in list(self.binds)), return_exceptions=True)

    async def _bind_once(self) -> _Bind:
        s = self.settings
        loop = asyncio.get_running_loop()
        _transport, bind = await asyncio.wait_for(
            loop.create_connection(lambda: _Bind(self), s.host, s.port), s.response_timeout
        )
        resp = await bind.request(
            BindTransceiver(
                system_id=s.system_id, password=s.password, system_type=s.system_type,
                interface_version=0x34,
            ),
            s.response_timeout,
        )
        if resp.command_status != CommandStatus.ESME_ROK:
            bind.close()
            raise BindFailed(f"bind refused with command_status 0x{resp.command_status:08x}")
        return bind

    async def _keep_bound(self, index: int) -> None:
        attempt = 0
        while not self._stopping:
            try:
                bind = await self._bind_once()
            except (OSError, TimeoutError, ConnectionError) as exc:
                attempt += 1
                # Full jitter (AWS architecture blog): spreads reconnects of many
                # binds over the whole interval instead of synchronising them.
                delay = random.uniform(0, min(30.0, 0.5 * 2 ** min(attempt, 6)))
                log.warning("bind_failed", connector=self.name, bind=index, error=str(exc),
                            retry_in=round(delay, 2))
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.binds.append(bind)
            metrics.CONNECTOR_BOUND.labels(self.name).set(len(self.binds))
            self._ready.set()
            log.info("bound", connector=self.name, bind=index)
            keepalive = asyncio.create_task(
                bind.keepalive(self.settings.enquire_link_interval, self.settings.response_timeout)
            )
            try:
                await bind.closed
            finally:
                keepalive.cancel()
                self.binds.remove(bind)
                metrics.CONNECTOR_BOUND.labels(self.name).set(len(self.binds))
                if not self.binds:
                    self._ready.clear()
            log.warning("unbound", connector=self.name, bind=index)

    async def wait_bound(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def submit(self, pdu: Any) -> Any:
        """Send one submit_sm on the next bound bind with room in its window;
        returns the response PDU. Raises ConnectionError/TimeoutError (transient)."""
        while True:
            await self._ready.wait()
            if not self.binds:
                continue
            self._next = (self._next + 1) % len(self.binds)
            bind = self.binds[self._next]
            async with bind.window:
                if bind.transport is None:
                    continue
                return await bind.request(pdu, self.settings.response_timeout)
