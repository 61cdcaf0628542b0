"""Outbound SMPP connector: several binds to one SMSC (transceivers, or a
transmitter plus a receiver each), a window of outstanding submit_sm per bind,
enquire_link, and reconnects with jittered exponential backoff (so a carrier
outage does not become a reconnect storm).

It stands on our own `protocols.smpp` through `gateway.core.smpp_transport`; see
docs/delivery.md for why not aiosmpplib or smpp34 on this path.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

from gateway.connectors import Health, Outcome, SendResult
from gateway.core import logs, metrics
from gateway.core.backoff import backoff
from gateway.core.config import ConnectorSettings
from gateway.core.events import Concatenation, Event, Inbound, Mo, Receipt
from gateway.core.model import Message
from gateway.core.slots import Slots
from gateway.core.smpp_transport import SmppProtocol
from protocols.receipt import merge_receipt_tlvs, parse_receipt
from protocols.smpp import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    CommandStatus,
    DeliverSm,
    Role,
    SmppError,
    SubmitSm,
    Tag,
)
from protocols.text import Part, decode_short_message, split

log = logs.get("smsgw.connector")

# command_status values worth another try: the SMSC is busy, not refusing the
# message. Everything else is permanent. The table is docs/delivery.md's.
TRANSIENT_STATUSES = frozenset({
    CommandStatus.ESME_RTHROTTLED,
    CommandStatus.ESME_RMSGQFUL,
    CommandStatus.ESME_RSYSERR,
    CommandStatus.ESME_RX_T_APPN,
    CommandStatus.ESME_RUNKNOWNERR,
})
THROTTLE_STATUSES = frozenset({CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL})


def source_address(sender: str) -> tuple[int, int, str]:
    """(TON, NPI, address): digits are an international number, anything else
    alphanumeric (SMPP 3.4 §5.2.5: TON 5 = alphanumeric)."""
    digits = sender.removeprefix("+")
    if digits.isdigit():
        return 1, 1, digits
    return 5, 0, sender


ESM_RECEIPT = 0x04  # esm_class bits 2-5 = 0001: SMSC delivery receipt (SMPP 3.4 §5.2.12)


def inbound_event(connector: str, settings: ConnectorSettings, pdu: DeliverSm) -> Event | None:
    """A deliver_sm as a Receipt or an Mo; None for a receipt that cannot be
    read (no id): acknowledged and dropped, as the SMSC would only resend it."""
    if not pdu.esm_class & ESM_RECEIPT:
        payload = pdu.get(Tag.MESSAGE_PAYLOAD)
        data = payload if isinstance(payload, bytes) and payload else pdu.short_message
        text, udh = decode_short_message(data, pdu.data_coding, pdu.esm_class)
        source = pdu.source_addr
        if pdu.source_addr_ton == 1 and source.isdigit():
            source = "+" + source
        concat = None
        if udh is not None and udh.concat is not None:
            concat = Concatenation(*udh.concat)
        else:
            ref, total, seq = (pdu.get(Tag.SAR_MSG_REF_NUM), pdu.get(Tag.SAR_TOTAL_SEGMENTS),
                               pdu.get(Tag.SAR_SEGMENT_SEQNUM))
            if isinstance(ref, int) and isinstance(total, int) and isinstance(seq, int):
                concat = Concatenation(ref, total, seq)
        return Mo(connector, source, pdu.destination_addr, text, concat)
    state_tlv = pdu.get(Tag.MESSAGE_STATE)
    id_tlv = pdu.get(Tag.RECEIPTED_MESSAGE_ID)
    receipt = merge_receipt_tlvs(
        parse_receipt(pdu.short_message),
        id_tlv if isinstance(id_tlv, str) else None,
        state_tlv if isinstance(state_tlv, int) else None,
    )
    if receipt is None or not receipt.id:
        log.warning("receipt_unreadable", connector=connector)
        return None
    return Receipt.of(connector, receipt.id, settings.receipt_id_format, receipt.stat,
                      receipt.err or "", receipt.done_date)


def concat_reference(message_id: str) -> int:
    # Derived from the id, so parts resent after a crash carry the same reference.
    return zlib.crc32(message_id.encode()) & 0xFFFF


class _Bind(SmppProtocol):
    role = Role.ESME

    def __init__(self, connector: SmppConnector) -> None:
        super().__init__()
        self.connector = connector
        self.window = Slots(connector.settings.window)

    def on_request(self, pdu: Any) -> None:
        if isinstance(pdu, DeliverSm):
            self.connector.received(self, pdu)
        else:
            super().on_request(pdu)


def tls_context(settings: ConnectorSettings) -> ssl.SSLContext | None:
    """The client TLS context of a connector with `tls = true`: certificate and
    host name verified by default (docs/security.md)."""
    if not settings.tls:
        return None
    context = ssl.create_default_context(cafile=settings.tls_ca)
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SmppConnector:
    def __init__(self, name: str, settings: ConnectorSettings, inbound: Inbound) -> None:
        self.name = name
        self.settings = settings
        self.inbound = inbound
        self._tls = tls_context(settings)
        self.health = Health(settings.failing_after)
        self.senders: list[_Bind] = []  # binds that can submit (TRX or TX)
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self._next = 0
        self._stopping = False
        self._paused_until = 0.0
        self._throttle_hits = 0
        self._by_status: dict[int, Any] = {}  # metric children, looked up once
        self._latency = metrics.SUBMIT_LATENCY.labels(name)
        self._sources: dict[str, tuple[int, int, str]] = {}  # sender -> (TON, NPI, address)
        self._delivered: list[tuple[_Bind, DeliverSm]] = []
        self._delivering: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        kinds: list[type[BindTransceiver | BindTransmitter | BindReceiver]]
        kinds = [BindTransceiver] if s.bind_mode == "trx" else [BindTransmitter, BindReceiver]
        for index in range(s.binds):
            for kind in kinds:
                self._tasks.append(asyncio.create_task(self._keep_bound(index, kind)))

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def down_for(self) -> float:
        return self.health.down_for()

    def capacity(self) -> int:
        return self.settings.window * self.settings.binds

    def reconnect_delay(self, attempt: int) -> float:
        """Seconds before reconnect attempt `attempt` (1, 2, ...): full jitter up
        to min(reconnect_max, reconnect_base * 2**attempt), so the binds of many
        gateways spread their reconnects over the whole interval instead of
        hitting a recovering SMSC together."""
        s = self.settings
        return backoff(attempt, s.reconnect_base, s.reconnect_max)

    def binds_bound(self) -> int:
        return len(self.senders)

    async def wait_bound(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _bind_once(
        self, kind: type[BindTransceiver | BindTransmitter | BindReceiver]
    ) -> _Bind:
        s = self.settings
        loop = asyncio.get_running_loop()
        transport, bind = await asyncio.wait_for(
            loop.create_connection(lambda: _Bind(self), s.host, s.port, ssl=self._tls,
                                   server_hostname=s.host if self._tls else None),
            s.response_timeout,
        )
        if transport.get_extra_info("sockname") == transport.get_extra_info("peername"):
            # No SMSC listening on a port of the local ephemeral range: TCP
            # connected the socket to itself, and holding it would keep the
            # SMSC from ever binding that port. Reset, not closed: no TIME_WAIT.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            raise ConnectionError(f"connected to itself on {s.host}:{s.port}: no SMSC listening")
        try:
            resp = await bind.request(
                kind(system_id=s.system_id, password=s.password, system_type=s.system_type,
                     interface_version=0x34),
                s.response_timeout,
            )
        except BaseException:
            bind.close()
            raise
        if resp.command_status != CommandStatus.ESME_ROK:
            bind.close()
            raise ConnectionError(f"bind refused with command_status 0x{resp.command_status:08x}")
        return bind

    async def _keep_bound(
        self, index: int, kind: type[BindTransceiver | BindTransmitter | BindReceiver]
    ) -> None:
        """Hold one bind for as long as the connector runs: reconnect with
        backoff when it fails or closes. An error nobody expected (a bug, an
        SMSC answer we do not handle) is logged at once with its traceback and
        treated like a failed bind, so the bind comes back instead of the task
        ending silently."""
        attempt = 0
        label = f"{kind.__name__}#{index}"
        while not self._stopping:
            try:
                await self._hold_bind(kind, label)
                attempt = 0
                continue
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, ConnectionError, SmppError) as exc:
                attempt += 1
                delay = self.reconnect_delay(attempt)
                log.warning("bind_failed", connector=self.name, bind=label, error=str(exc),
                            retry_in=round(delay, 2))
            except Exception as exc:
                attempt += 1
                delay = self.reconnect_delay(attempt)
                log.error("bind_task_failed", connector=self.name, bind=label,
                          error=repr(exc), exc_info=exc, retry_in=round(delay, 2))
            await asyncio.sleep(delay)

    async def _hold_bind(
        self, kind: type[BindTransceiver | BindTransmitter | BindReceiver], label: str
    ) -> None:
        """Bind, and serve until the bind closes."""
        bind = await self._bind_once(kind)
        sends = kind is not BindReceiver
        if sends:
            self.senders.append(bind)
            self._set_bound()
        log.info("bound", connector=self.name, bind=label)
        keepalive = asyncio.create_task(
            bind.keepalive(self.settings.enquire_link_interval, self.settings.response_timeout)
        )
        keepalive.add_done_callback(lambda task: self._keepalive_ended(task, bind, label))
        try:
            await bind.closed
        except asyncio.CancelledError:
            await bind.unbind()
            raise
        finally:
            keepalive.cancel()
            if sends:
                self.senders.remove(bind)
                self._set_bound()
        log.warning("unbound", connector=self.name, bind=label)

    def _keepalive_ended(self, task: asyncio.Task[None], bind: _Bind, label: str) -> None:
        """A keep-alive that failed unexpectedly closes its bind (which then
        reconnects) rather than leave it unwatched."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("keepalive_failed", connector=self.name, bind=label, error=repr(exc),
                  exc_info=exc)
        bind.close()

    def _set_bound(self) -> None:
        metrics.CONNECTOR_BOUND.labels(self.name).set(len(self.senders))
        self.health.bound(bool(self.senders))
        if self.senders:
            self._ready.set()
        else:
            self._ready.clear()

    # --- receiving --------------------------------------------------------------

    def received(self, bind: _Bind, pdu: DeliverSm) -> None:
        """Receipts and MO are handled in batches — one Redis call for all that
        arrived meanwhile on any bind of this connector — and acknowledged only
        after they are stored: an SMSC resends what we did not acknowledge, so
        none is lost if we die here. (A batch per bind cost a script call per bind
        per turn: see docs/benchmarks.md, session 9.)"""
        self._delivered.append((bind, pdu))
        if self._delivering is None:
            self._delivering = asyncio.get_running_loop().create_task(self._deliver())

    async def _deliver(self) -> None:
        try:
            while self._delivered:
                batch, self._delivered = self._delivered, []
                try:
                    statuses = await self._handle([pdu for _, pdu in batch])
                except Exception as exc:  # keep the binds alive; the SMSC will retry
                    log.error("deliver_sm_failed", connector=self.name, error=repr(exc),
                              exc_info=exc)
                    statuses = [CommandStatus.ESME_RSYSERR] * len(batch)
                for (bind, pdu), status in zip(batch, statuses, strict=True):
                    if bind.transport is None:
                        continue  # that bind closed meanwhile; the SMSC resends on another
                    try:
                        bind.send(pdu.make_resp(command_status=status))
                    except SmppError:
                        continue  # the session is closing
        except Exception as exc:  # never silent: what was not answered, the SMSC resends
            log.error("deliver_task_failed", connector=self.name, error=repr(exc), exc_info=exc)
        finally:
            self._delivering = None
            if self._delivered and not self._stopping:  # arrived while this one was failing
                self._delivering = asyncio.get_running_loop().create_task(self._deliver())

    async def _handle(self, pdus: list[DeliverSm]) -> list[int]:
        """The command_status to answer each PDU with, once `inbound` has them."""
        events = [inbound_event(self.name, self.settings, pdu) for pdu in pdus]
        readable = [e for e in events if e is not None]
        answers = await self.inbound(readable) if readable else []
        if len(answers) != len(readable):
            raise RuntimeError(f"{len(answers)} answers for {len(readable)} events")
        taken = iter(answers)
        return [CommandStatus.ESME_ROK if e is None or next(taken)
                else CommandStatus.ESME_RX_T_APPN for e in events]

    # --- sending ----------------------------------------------------------------

    def parts(self, message: Message) -> list[Part]:
        return split(
            message.text, message.encoding, self.settings.concat,
            concat_reference(message.id), packed=self.settings.gsm_packed,
        )

    def submit_sm(self, message: Message, part: Part) -> SubmitSm:
        s = self.settings
        source = self._sources.get(message.sender)
        if source is None:
            source = self._sources[message.sender] = source_address(message.sender)
        ton, npi, source_addr = source
        pdu = SubmitSm(
            source_addr_ton=ton if s.source_ton is None else s.source_ton,
            source_addr_npi=npi if s.source_npi is None else s.source_npi,
            source_addr=source_addr,
            dest_addr_ton=s.dest_ton, dest_addr_npi=s.dest_npi,
            destination_addr=message.to.lstrip("+"),
            esm_class=part.esm_class,
            data_coding=s.gsm_data_coding if part.data_coding == 0 else part.data_coding,
            registered_delivery=1,  # every part asks for its own receipt
            short_message=b"" if part.payload else part.short_message,
        )
        if part.payload:
            pdu.set(Tag.MESSAGE_PAYLOAD, part.short_message)
        if part.sar is not None:
            ref, total, seq = part.sar
            pdu.set(Tag.SAR_MSG_REF_NUM, ref)
            pdu.set(Tag.SAR_TOTAL_SEGMENTS, total)
            pdu.set(Tag.SAR_SEGMENT_SEQNUM, seq)
        return pdu

    async def send(self, message: Message, part: Part) -> SendResult:
        """Submit one part; never raises for carrier or transport trouble."""
        pdu = self.submit_sm(message, part)
        started = time.perf_counter()
        try:
            resp = await self._submit(pdu)
        except (ConnectionError, TimeoutError, SmppError) as exc:
            return self._failed(exc)
        return self._result(resp, started)

    def try_send(
        self, message: Message, part: Part, on_result: Callable[[SendResult], None]
    ) -> bool:
        """Submit one part now, without a coroutine, if a bind has room in its
        window; `on_result` gets what `send` would have returned. False when
        nothing was sent (paused, unbound, every window full here): use `send`."""
        if self._paused_until and self._paused_until > time.monotonic():
            return False
        senders = self.senders
        for _ in range(len(senders)):
            self._next = (self._next + 1) % len(senders)
            bind = senders[self._next]
            window = bind.window
            if bind.can_write() and window.take():
                break
        else:
            return False
        pdu = self.submit_sm(message, part)
        try:
            future = bind.request_future(pdu, self.settings.response_timeout)
        except (ConnectionError, SmppError):
            window.release()
            return False
        started = time.perf_counter()

        def done(future: asyncio.Future[Any]) -> None:
            window.release()
            bind.forget(pdu.sequence_number)
            try:
                resp = future.result()
            except (ConnectionError, TimeoutError, SmppError) as exc:
                on_result(self._failed(exc))
                return
            on_result(self._result(resp, started))

        future.add_done_callback(done)
        return True

    def _failed(self, exc: Exception) -> SendResult:
        # SmppError here: the session is closing (an unbind from either side)
        # while its transport is still there; the part goes on another bind.
        result = SendResult(Outcome.TRANSIENT, error_code=f"transport: {exc}")
        self.health.record(result)
        return result

    def _result(self, resp: Any, started: float) -> SendResult:
        status = resp.command_status
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = metrics.SUBMIT_SM.labels(self.name, f"0x{status:x}")
        counter.inc()
        self._latency.observe(time.perf_counter() - started)
        if status == CommandStatus.ESME_ROK:
            self._throttle_hits = 0
            result = SendResult(Outcome.OK, provider_id=resp.message_id)
        elif status in TRANSIENT_STATUSES:
            throttled = status in THROTTLE_STATUSES
            if throttled:
                self._slow_down()
            result = SendResult(Outcome.TRANSIENT, error_code=f"smpp_0x{status:08x}",
                                throttled=throttled)
        else:
            result = SendResult(Outcome.PERMANENT, error_code=f"smpp_0x{status:08x}")
        self.health.record(result)
        return result

    def _slow_down(self) -> None:
        """The SMSC said ESME_RTHROTTLED / RMSGQFUL: pause the whole connector,
        longer each time it happens again right after a pause (50 ms doubling
        to 5 s, jittered). The other submit_sm of the window that come back
        throttled during a pause are the same event and do not lengthen it:
        counted one by one, a full window of refusals at an SMSC's per-second
        cap pushed every pause to 5 s and the rate to a fraction of the cap."""
        now = time.monotonic()
        if now < self._paused_until:
            return
        self._throttle_hits += 1
        pause = random.uniform(0.5, 1.0) * min(5.0, 0.05 * 2 ** min(self._throttle_hits, 7))
        self._paused_until = now + pause

    async def _submit(self, pdu: SubmitSm) -> Any:
        while True:
            if self._paused_until:
                wait = self._paused_until - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                else:
                    self._paused_until = 0.0
            if not self.senders:
                if not await self.wait_bound(self.settings.response_timeout):
                    raise ConnectionError("no bound transmitter")
                continue
            self._next = (self._next + 1) % len(self.senders)
            bind = self.senders[self._next]
            window = bind.window
            if not window.take():
                await window.acquire()
            try:
                if bind.transport is None:
                    continue
                pdu.sequence_number = 0  # the session numbers every attempt afresh
                return await bind.request(pdu, self.settings.response_timeout)
            finally:
                window.release()
