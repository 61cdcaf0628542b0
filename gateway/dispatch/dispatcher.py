"""The dispatcher: reads a connector's lanes and sends each message's parts.

A lane entry is acknowledged only when every part has its submit_sm_resp (or the
message has ended, or moved on), so a process killed mid-send leaves the entry
pending and another process reclaims it with XAUTOCLAIM, or takes it over at
once when it can tell the dead process is certainly gone (gateway/dispatch/takeover.py).
Parts whose SMSC id is already stored are never sent again: at-least-once into
the gateway, at-most-once for what the SMSC acknowledged.

Failure handling (docs/delivery.md): transient errors retry in place with
full-jitter backoff, which keeps the parts of a message in order; a connector
down or failing for `failover_after` seconds hands its messages to the next
connector of each message's route; retries that run out end the message as
`failed` in the dead-letter stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Mapping
from functools import partial
from typing import Any

from gateway.connectors import Connector, Outcome, SendResult
from gateway.core import logs, metrics
from gateway.core.backoff import backoff
from gateway.core.coalesce import Coalescer
from gateway.core.config import (
    CarrierSettings,
    DispatchSettings,
    RetrySettings,
    ThrottleSettings,
)
from gateway.core.model import EXPIRED, FAILED, FINAL_STATUSES, MessageState
from gateway.core.slots import Slots
from gateway.dispatch.rates import SharedRate
from gateway.dispatch.takeover import Takeover
from gateway.receipts.dlr import Receipts
from gateway.store import LANES, AckedPart, LaneEntry, Store
from protocols.text import Part

log = logs.get("smsgw.dispatch")

# Lower goes first where messages queue inside a process (rate limits).
PRIORITY = {msg_class: rank for rank, msg_class in enumerate(LANES)}


def retry_delay(retry: RetrySettings, attempt: int, throttled: bool, priority: int) -> float:
    """Seconds before retry `attempt` of a part: full-jitter exponential backoff.
    OTP and transactional parts that were only throttled try again within
    `base_delay`, without growing: the SMSC is busy, not failing, and (over
    SMPP) the connector's own pause already spaces the retries, so they
    overtake the marketing that is backing off (docs/delivery.md)."""
    grows = not (throttled and priority < PRIORITY["marketing"])
    return backoff(attempt if grows else 0, retry.base_delay, retry.max_delay)


class _Failover(Exception):
    """The connector is down or failing and the message has somewhere else to go."""


class Dispatcher:
    def __init__(
        self,
        connector: Connector,
        store: Store,
        receipts: Receipts,
        consumer: str,
        takeover: Takeover | None = None,
        *,
        dispatch: DispatchSettings,
        retry: RetrySettings,
        throttle: ThrottleSettings,
        carriers: Mapping[str, CarrierSettings],
    ) -> None:
        self.name = name = connector.name
        self.dispatch = dispatch
        self.retry = retry
        self.conn_settings = connector.settings
        self.store = store
        self.connector = connector
        self.receipts = receipts
        self.consumer = consumer
        self.takeover = takeover
        self._stopping = False
        # Messages in flight: as many as the binds' windows hold (or the HTTP
        # connector's concurrency). Only as many entries as there are free slots
        # are read from the lanes, so an OTP that arrives behind a marketing
        # backlog waits for one slot, not for a read-ahead batch.
        self.capacity = connector.capacity()
        self._inflight = Slots(self.capacity)
        self._tasks: set[asyncio.Task[None]] = set()
        tps = self.conn_settings.tps
        self.rate = SharedRate(store, f"connector:{name}", tps) if tps else None
        # Per-message Redis writes, batched across every message in flight.
        self._submitted: Coalescer[AckedPart, bytes | None] = Coalescer(store.parts_submitted)
        self._acks = Coalescer(self._ack_many)
        self._per_minute = throttle.recipient_per_minute
        self.carrier_rates = {
            carrier: SharedRate(store, f"carrier:{carrier}", c.tps)
            for carrier, c in carriers.items()
        }

    def stop(self) -> None:
        self._stopping = True

    async def _ack_many(self, entries: list[tuple[str, bytes]]) -> list[None]:
        await self.store.ack(entries)
        return [None] * len(entries)

    def _ack(self, entry: LaneEntry) -> None:
        # Not awaited: an acknowledgement that is lost leaves the entry pending;
        # it is reclaimed later and found final (or its parts acknowledged).
        self._acks.push((entry.lane, entry.entry_id))

    # --- the read loop --------------------------------------------------------

    async def run(self) -> None:
        await self.store.ensure_lanes(self.name)
        dispatch = self.dispatch
        next_reclaim = 0.0
        while not self._stopping:
            down_for = self.connector.down_for()
            failing_over = down_for >= self.conn_settings.failover_after
            if down_for and not failing_over:
                # Down, but not for long: the queue waits (a reconnect is likely).
                await self.connector.wait_bound(0.5)
                continue
            entries: list[LaneEntry] = []
            if self.takeover is not None and self.takeover.pending(self.name):
                # A dead worker's entries, at once (gateway/dispatch/takeover.py).
                entries = await self.takeover.next(self.name, dispatch.batch)
            elif time.monotonic() >= next_reclaim:
                next_reclaim = time.monotonic() + dispatch.claim_idle_ms / 2000
                entries = await self.store.reclaim(
                    self.name, self.consumer, dispatch.claim_idle_ms, dispatch.batch
                )
            if not entries:
                # Wait for a free slot before reading, then read no more than fit.
                await self._inflight.acquire()
                self._inflight.release()
                room = max(1, min(dispatch.batch, self._inflight.free))
                entries = await self.store.read_lanes(
                    self.name, self.consumer, room, dispatch.block_ms
                )
            if not entries:
                continue
            try:
                states = await self.store.dispatch_view([e.message_id for e in entries])
                # Looked again: the connector may have come back while the read blocked.
                if failing_over and \
                        self.connector.down_for() >= self.conn_settings.failover_after:
                    await asyncio.gather(*(
                        self._hand_off(e, s) for e, s in zip(entries, states, strict=True)
                    ))
                    continue
            except BaseException:
                # Read but not started (Redis went away, or this task is being
                # cancelled): leave them pending for a reclaim instead of keeping
                # them claimed here forever (`Store.keep_claimed`).
                for entry in entries:
                    self.store.abandon(entry.lane, entry.entry_id)
                raise
            for entry, state in zip(entries, states, strict=True):
                if not self._inflight.take():
                    await self._inflight.acquire()
                if not self._send_now(entry, state):
                    self._spawn(self._send(entry, state), entry)
        # Finish what was started: tasks, and parts sent without one.
        deadline = time.monotonic() + self.conn_settings.response_timeout + 5
        while self._inflight.free < self.capacity and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._acks.idle()

    def _spawn(self, coro: Coroutine[Any, Any, None], entry: LaneEntry) -> None:
        """Run `coro` for the message of `entry`, holding an in-flight slot; the
        slot is freed when it ends."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(partial(self._done, entry))

    def _done(self, entry: LaneEntry, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._inflight.release()
        if not task.cancelled() and task.exception() is not None:
            # Not done: the entry stays pending and is reclaimed.
            log.error("dispatch_failed", connector=self.name, error=repr(task.exception()))
            self.store.abandon(entry.lane, entry.entry_id)

    async def _hand_off(self, entry: LaneEntry, state: MessageState | None) -> None:
        """This connector is down: move the message to its next connector, or
        keep it waiting (outside the lane) if this was its last one."""
        if state is None or state.status in FINAL_STATUSES:
            self._ack(entry)
            return
        m = state.message
        if entry.hop + 1 < len(m.connectors):
            nxt = m.connectors[entry.hop + 1]
            await self.store.reroute(entry, m, entry.hop + 1, f"failover {self.name} -> {nxt}")
            log.info("failover", message_id=m.id, connector=self.name, to_connector=nxt)
        else:
            await self.store.defer(entry, time.time() + self.conn_settings.failover_after)

    # --- one message without a task: the common case ---------------------------

    def _send_now(self, entry: LaneEntry, state: MessageState | None) -> bool:
        """A one-part message with nothing to wait for (no send_at ahead, no rate
        limit, no part acknowledged before) goes straight into a bind's window
        with a callback, which costs a fraction of a task per message. False:
        nothing was sent; `_send` handles it. Whatever goes wrong after the
        submit_sm left (an error response, a timeout, a lost bind) continues in
        `_send` with that first result, under the same rules."""
        if state is None or state.status in FINAL_STATUSES \
                or state.smsc_ids:
            return False
        m = state.message
        now = time.time()
        if m.parts != 1 or (m.send_at and m.send_at > now + 0.05) or now >= m.expires_at:
            return False
        if self._per_minute or self.rate is not None or m.carrier in self.carrier_rates:
            return False
        parts = self.connector.parts(m)
        if len(parts) != 1:
            return False
        return self.connector.try_send(m, parts[0], partial(self._sent_now, entry, state, parts[0]))

    def _sent_now(self, entry: LaneEntry, state: MessageState, part: Part,
                  result: SendResult) -> None:
        m = state.message
        if result.outcome is not Outcome.OK:
            self._spawn(self._send(entry, state, first=result), entry)  # keeps the slot
            return
        smsc_id = result.provider_id
        ttl = int(m.expires_at - time.time()) + 24 * 3600
        self._submitted.push(
            (self.name, m.id, part.seq, smsc_id, self.receipts.normalize_resp(self.name, smsc_id),
             ttl, part.total or m.parts),
            partial(self._recorded_now, entry, m.id, part.seq),
        )

    def _recorded_now(self, entry: LaneEntry, message_id: str, seq: int,
                      early: bytes | Exception | None) -> None:
        if isinstance(early, Exception):
            # Not recorded: the entry stays pending and is reclaimed (as when a
            # task's write fails); the SMSC may then see this part twice.
            log.error("dispatch_failed", connector=self.name, error=repr(early))
            self.store.abandon(entry.lane, entry.entry_id)
            self._inflight.release()
            return
        metrics.count_status("submitted")
        if early is not None:
            self._spawn(self._early_then_ack(entry, message_id, seq, early), entry)
            return
        self._ack(entry)
        self._inflight.release()

    async def _early_then_ack(self, entry: LaneEntry, message_id: str, seq: int,
                              early: bytes) -> None:
        await self.receipts.early(message_id, seq, early)
        self._ack(entry)

    # --- one message in a task ---------------------------------------------------

    async def _send(
        self, entry: LaneEntry, state: MessageState | None, first: SendResult | None = None
    ) -> None:
        """Send a message's parts. `first`: the result of a submit_sm `_send_now`
        already sent for its first unacknowledged part."""
        if state is None or state.status in FINAL_STATUSES:
            self._ack(entry)
            return
        m = state.message
        now = time.time()
        if first is None and m.send_at and m.send_at > now + 0.05:
            await self.store.defer(entry, m.send_at)
            return
        if first is None and self._per_minute:
            granted, wait = await self.store.rate_acquire(
                f"rcpt:{m.to}", self._per_minute / 60, 1, 1
            )
            if not granted:
                await self.store.defer(entry, now + wait)
                return
        try:
            await self._send_parts(state, entry.hop, first)
        except _Failover:
            await self._hand_off(entry, state)
            return
        self._ack(entry)

    async def _send_parts(
        self, state: MessageState, hop: int, first: SendResult | None = None
    ) -> None:
        m = state.message
        ttl = int(m.expires_at - time.time()) + 24 * 3600
        carrier_rate = self.carrier_rates.get(m.carrier)
        priority = PRIORITY.get(m.msg_class, len(LANES))
        parts = self.connector.parts(m)
        if not parts or parts[0].total != m.parts:
            # Admission counted the parts with the route's first connector's
            # concat setting; this one (a fallback, or a resend) cuts the text
            # otherwise. Sending it would give the SMSC parts that do not match
            # the stored count, the receipts and the part states.
            cut = parts[0].total if parts else 0
            code = f"parts_mismatch: {self.name} cuts {cut} parts, admission counted {m.parts}"
            log.error("parts_mismatch", message_id=m.id, connector=self.name, cut=cut,
                      parts=m.parts)
            if await self.store.set_status(m.id, FAILED, code, e="parts_mismatch"):
                metrics.count_status(FAILED)
            return
        for part in parts:
            if part.seq in state.smsc_ids:
                continue  # acknowledged before a crash or reconnect: never send twice
            attempt = 0
            while True:
                if first is not None:  # this part was sent already: go on from its result
                    result, first = first, None
                elif time.time() >= m.expires_at:
                    if await self.store.set_status(m.id, EXPIRED, "validity_elapsed",
                                                   e="validity_elapsed"):
                        metrics.count_status(EXPIRED)
                    return
                else:
                    if self.rate is not None:
                        await self.rate.acquire(priority)  # TPS counts parts: each submit_sm
                    if carrier_rate is not None:
                        await carrier_rate.acquire(priority)
                    result = await self.connector.send(m, part)
                if result.outcome is Outcome.OK:
                    break
                if result.outcome is Outcome.PERMANENT:
                    if await self.store.set_status(m.id, FAILED, result.error_code,
                                                   e=result.error_code):
                        metrics.count_status(FAILED)
                    return
                attempt += 1
                if (self.connector.down_for() >= self.conn_settings.failover_after
                        and hop + 1 < len(m.connectors)):
                    raise _Failover
                if attempt >= self.retry.max_attempts and not result.throttled:
                    if await self.store.dead_letter(
                        m.id, FAILED, f"retries_exhausted: {result.error_code}", self.name
                    ):
                        metrics.count_status(FAILED)
                    return
                await asyncio.sleep(
                    retry_delay(self.retry, attempt, result.throttled, priority))
            # Stored as the SMSC wrote it (users look it up in the carrier's
            # records); receipts are matched on the normalised form.
            smsc_id = result.provider_id
            early = await self._submitted.submit(
                (self.name, m.id, part.seq, smsc_id,
                 self.receipts.normalize_resp(self.name, smsc_id), ttl, part.total or m.parts)
            )
            if part.seq <= 1:
                metrics.count_status("submitted")
            if early is not None:
                await self.receipts.early(m.id, part.seq, early)
