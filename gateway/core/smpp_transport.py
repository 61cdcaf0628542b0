"""asyncio glue around the sans-I/O `protocols.smpp.Session`.

One `SmppProtocol` per TCP connection, for both sides (our outbound ESME binds,
the SMPP server, the simulator). It owns framing errors (generic_nack),
outstanding-request futures and write batching: PDUs queued during one event
loop iteration leave in one `write`, which is what lets a plain asyncio
protocol move well over 100,000 PDUs a second on loopback.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from protocols.smpp import (
    CommandStatus,
    ConnectionFatal,
    EnquireLink,
    GenericNack,
    PduError,
    Role,
    Session,
    SmppError,
    Unbind,
    generic_nack,
    response_for,
)


class SmppProtocol(asyncio.Protocol):
    role: Role

    def __init__(self, max_pdu_length: int = 65536) -> None:
        self.session = Session(self.role, max_pdu_length=max_pdu_length)
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self._deadlines: dict[int, float] = {}
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.closed = asyncio.get_running_loop().create_future()
        self._can_write = asyncio.Event()
        self._can_write.set()

    # --- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        for event in self.session.receive_data(data):
            if isinstance(event, PduError):
                self.on_pdu_error(event)
            elif isinstance(event, ConnectionFatal):
                self.close()
                return
            elif event.command_id & 0x80000000:  # a response (or generic_nack)
                future = self.pending.pop(event.sequence_number, None)
                if future is not None and not future.done():
                    future.set_result(event)
                elif isinstance(event, GenericNack):
                    self.on_unmatched_nack(event)
            else:
                self.on_request(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        error = ConnectionError(f"SMPP connection lost: {exc or 'closed'}")
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()
        if not self.closed.done():
            self.closed.set_result(None)
        self._can_write.set()
        self.on_closed()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # --- sending ------------------------------------------------------------

    def send(self, pdu: Any) -> None:
        """Queue a PDU (request or response); it leaves with this loop iteration's batch."""
        if self.transport is None:
            raise ConnectionError("SMPP connection is closed")
        self._out.append(self.session.send(pdu))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None:
            self.transport.write(b"".join(self._out))
        self._out.clear()

    async def request(self, pdu: Any, timeout: float) -> Any:
        """Send a request and wait for its response (or generic_nack); TimeoutError
        after `timeout` seconds."""
        if not self._can_write.is_set():
            await self._can_write.wait()
        future = self.request_future(pdu, timeout)
        try:
            return await future
        finally:
            self.forget(pdu.sequence_number)

    def request_future(self, pdu: Any, timeout: float) -> asyncio.Future[Any]:
        """Send a request now; the future gets its response, or TimeoutError after
        `timeout` seconds, or ConnectionError. The caller calls `forget` when done."""
        self.send(pdu)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        seq = pdu.sequence_number
        self.pending[seq] = future
        # One timer for the whole window instead of one per request: deadlines
        # are kept in sending order, so the sweep only looks at the oldest.
        self._deadlines[seq] = loop.time() + timeout
        if self._sweep_handle is None:
            self._sweep_handle = loop.call_later(timeout, self._sweep)
        return future

    def can_write(self) -> bool:
        return self.transport is not None and self._can_write.is_set()

    def forget(self, seq: int) -> None:
        self.pending.pop(seq, None)
        self._deadlines.pop(seq, None)
        self.session.forget(seq)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._sweep_handle = None
        for seq, deadline in list(self._deadlines.items()):
            if deadline > now:
                self._sweep_handle = loop.call_at(deadline, self._sweep)
                return
            del self._deadlines[seq]
            future = self.pending.get(seq)
            if future is not None and not future.done():
                future.set_exception(TimeoutError(f"no response to sequence {seq}"))

    def close(self) -> None:
        self._flush()
        if self.transport is not None:
            self.transport.close()

    async def unbind(self, timeout: float = 2.0) -> None:
        try:
            await self.request(Unbind(), timeout)
        except (ConnectionError, TimeoutError, SmppError):
            pass
        self.close()

    async def keepalive(self, interval: float, timeout: float) -> None:
        """enquire_link every `interval`; a peer that stops answering is dropped."""
        while self.transport is not None:
            await asyncio.sleep(interval)
            try:
                await self.request(EnquireLink(), timeout)
            except (TimeoutError, ConnectionError, SmppError):
                self.close()
                return

    # --- hooks for subclasses -------------------------------------------------

    def on_request(self, pdu: Any) -> None:
        if isinstance(pdu, EnquireLink):
            self.send(pdu.make_resp())
        elif isinstance(pdu, Unbind):
            self.send(pdu.make_resp())
            self.close()
        else:
            # Operations this side does not serve (outbind, alert_notification, ...):
            # the matching error response, or generic_nack where there is none.
            self.send(response_for(pdu, CommandStatus.ESME_RINVCMDID))

    def on_pdu_error(self, error: PduError) -> None:
        # Answer what we could not read with generic_nack (SMPP 3.4 §4.3) and go on.
        self.send(generic_nack(error.sequence_number or 0, error.command_status))

    def on_unmatched_nack(self, nack: GenericNack) -> None:
        pass

    def on_closed(self) -> None:
        pass
