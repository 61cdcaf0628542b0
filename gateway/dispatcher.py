"""The dispatcher: reads a connector's lanes and sends each message's parts.

A lane entry is acknowledged only when every part has its submit_sm_resp (or the
message has ended), so a process killed mid-send leaves the entry pending and
another process reclaims it with XAUTOCLAIM. Parts whose SMSC id is already
stored are never sent again: at-least-once into the gateway, at-most-once for
what the SMSC acknowledged.
"""

from __future__ import annotations

import asyncio
import random
import time
import zlib

from gateway import logs, metrics
from gateway.config import ConnectorSettings, Settings
from gateway.connectors.smpp import SmppConnector
from gateway.model import EXPIRED, FAILED, FINAL_STATUSES, MessageState
from gateway.receipts import Receipts
from gateway.store import Store
from protocols.smpp import CommandStatus, SubmitSm
from protocols.text import Concat, Encoding, split

log = logs.get("smsgw.dispatch")

# command_status values worth another try (the SMSC is busy, not refusing the
# message); everything else is permanent. See docs/delivery.md.
TRANSIENT = frozenset({
    CommandStatus.ESME_RTHROTTLED,
    CommandStatus.ESME_RMSGQFUL,
    CommandStatus.ESME_RSYSERR,
})


def source_address(sender: str) -> tuple[int, int, str]:
    """(TON, NPI, address): digits are an international number, anything else
    alphanumeric (SMPP 3.4 §5.2.5: TON 5 = alphanumeric)."""
    digits = sender.removeprefix("+")
    if digits.isdigit():
        return 1, 1, digits
    return 5, 0, sender


def concat_reference(message_id: str) -> int:
    # Derived from the id, so parts resent after a crash carry the same reference.
    return zlib.crc32(message_id.encode()) & 0xFF


class Dispatcher:
    def __init__(
        self,
        name: str,
        settings: Settings,
        store: Store,
        connector: SmppConnector,
        receipts: Receipts,
        consumer: str,
    ) -> None:
        self.name = name
        self.settings = settings
        self.conn_settings: ConnectorSettings = settings.connectors[name]
        self.store = store
        self.connector = connector
        self.receipts = receipts
        self.consumer = consumer
        self._stopping = False
        self._inflight = asyncio.Semaphore(self.conn_settings.window * self.conn_settings.binds * 2)
        self._tasks: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        await self.store.ensure_lanes(self.name)
        dispatch = self.settings.dispatch
        next_reclaim = 0.0
        while not self._stopping:
            # A connector that is down keeps its queue: nothing is read until it binds.
            if not await self.connector.wait_bound(1.0):
                continue
            entries = []
            if time.monotonic() >= next_reclaim:
                next_reclaim = time.monotonic() + dispatch.claim_idle_ms / 2000
                entries = await self.store.reclaim(
                    self.name, self.consumer, dispatch.claim_idle_ms, dispatch.batch
                )
            if not entries:
                entries = await self.store.read_lanes(
                    self.name, self.consumer, dispatch.batch, dispatch.block_ms
                )
            if not entries:
                continue
            states = await self.store.get_many(mid for _, _, mid in entries)
            for (lane, entry_id, _mid), state in zip(entries, states, strict=True):
                await self._inflight.acquire()
                task = asyncio.create_task(self._send(lane, entry_id, state))
                self._tasks.add(task)
                task.add_done_callback(self._done)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._inflight.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("dispatch_failed", connector=self.name, error=repr(task.exception()))

    async def _send(self, lane: str, entry_id: bytes, state: MessageState | None) -> None:
        if state is not None and state.status not in FINAL_STATUSES:
            await self._send_parts(state)
        await self.store.ack([(lane, entry_id)])

    async def _send_parts(self, state: MessageState) -> None:
        m = state.message
        ton, npi, source = source_address(m.sender)
        parts = split(m.text, Encoding(m.encoding), Concat.UDH8, concat_reference(m.id))
        ttl = int(m.expires_at - time.time()) + 24 * 3600
        for part in parts:
            if part.seq in state.smsc_ids:
                continue  # acknowledged before a crash or reconnect: never send twice
            pdu = SubmitSm(
                source_addr_ton=ton, source_addr_npi=npi, source_addr=source,
                dest_addr_ton=1, dest_addr_npi=1, destination_addr=m.to.lstrip("+"),
                esm_class=part.esm_class, data_coding=part.data_coding,
                registered_delivery=1, short_message=part.short_message,
            )
            status, smsc_id = await self._submit_with_retry(pdu, m.expires_at)
            if status is None:
                await self._end(m.id, EXPIRED, "validity_elapsed")
                return
            if status != CommandStatus.ESME_ROK:
                await self._end(m.id, FAILED, f"smpp_0x{status:08x}")
                return
            early = await self.store.part_submitted(
                self.name, m.id, part.seq, self.receipts.normalize(self.name, smsc_id), ttl
            )
            if part.seq == 1:
                metrics.MESSAGES.labels("submitted").inc()
            if early is not None:
                await self.receipts.apply(m.id, part.seq, early)

    async def _submit_with_retry(self, pdu: SubmitSm, expires_at: float) -> tuple[int | None, str]:
        """Send until the SMSC gives an answer that is not transient, backing off
        with full jitter; (None, "") if validity runs out first."""
        attempt = 0
        while time.time() < expires_at:
            started = time.perf_counter()
            try:
                resp = await self.connector.submit(pdu)
            except (ConnectionError, TimeoutError) as exc:
                status, reason = None, repr(exc)
            else:
                metrics.SUBMIT_SM.labels(self.name, f"0x{resp.command_status:x}").inc()
                metrics.SUBMIT_LATENCY.labels(self.name).observe(time.perf_counter() - started)
                if resp.command_status not in TRANSIENT:
                    return resp.command_status, resp.message_id
                status, reason = resp.command_status, f"0x{resp.command_status:08x}"
            attempt += 1
            delay = random.uniform(0, min(10.0, 0.05 * 2 ** min(attempt, 8)))
            log.info("submit_retry", connector=self.name, reason=reason, status=status,
                     retry_in=round(delay, 3))
            pdu.sequence_number = 0  # a fresh sequence number for the new attempt
            await asyncio.sleep(delay)
        return None, ""

    async def _end(self, message_id: str, status: str, error_code: str) -> None:
        if await self.store.set_status(message_id, status, error_code, e=error_code):
            metrics.MESSAGES.labels(status).inc()
