"""The asyncio glue on real loopback sockets: timeouts, lost connections."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.config import ConnectorSettings
from gateway.connectors.smpp import SmppConnector
from gateway.smpp_io import SmppProtocol
from protocols.smpp import BindTransceiver, CommandStatus, DeliverSm, EnquireLink, Role


class _Esme(SmppProtocol):
    role = Role.ESME


async def _silent_server() -> tuple[asyncio.Server, int]:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass  # reads everything, answers nothing
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_unanswered_requests_time_out_one_by_one() -> None:
    server, port = await _silent_server()
    loop = asyncio.get_running_loop()
    _, esme = await loop.create_connection(_Esme, "127.0.0.1", port)
    try:
        results = await asyncio.gather(
            esme.request(EnquireLink(), 0.2), esme.request(EnquireLink(), 0.2),
            return_exceptions=True,
        )
        assert all(isinstance(r, TimeoutError) for r in results)
        assert esme.pending == {} and esme.session.outstanding == 0
    finally:
        esme.close()
        server.close()


async def test_lost_connection_fails_what_is_outstanding() -> None:
    server, port = await _silent_server()
    loop = asyncio.get_running_loop()
    _, esme = await loop.create_connection(_Esme, "127.0.0.1", port)
    pending = asyncio.ensure_future(esme.request(EnquireLink(), 30))
    await asyncio.sleep(0.05)
    esme.transport.abort()  # type: ignore[union-attr]
    with pytest.raises(ConnectionError):
        await pending
    server.close()


class _Smsc(SmppProtocol):
    """An SMSC end that answers binds; the test sends deliver_sm through it."""

    role = Role.SMSC

    def __init__(self, bound: list[_Smsc]) -> None:
        super().__init__()
        self.bound = bound

    def on_request(self, pdu: Any) -> None:
        if isinstance(pdu, BindTransceiver):
            self.send(pdu.make_resp(system_id="smsc"))
            self.bound.append(self)
        else:
            super().on_request(pdu)


async def test_deliver_sm_from_every_bind_is_stored_together_and_answered_on_its_own_bind(
) -> None:
    """While one batch of receipts is being stored, those arriving on any bind of
    the connector queue for the next batch, and each deliver_sm_resp goes back on
    the bind that carried it with the status the handler gave that PDU."""
    loop = asyncio.get_running_loop()
    bound: list[_Smsc] = []
    server = await loop.create_server(lambda: _Smsc(bound), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    calls: list[list[bytes]] = []
    release = asyncio.Event()

    async def on_deliver(connector: str, pdus: list[DeliverSm]) -> list[int]:
        calls.append([p.short_message for p in pdus])
        if len(calls) == 1:
            await release.wait()
        return [CommandStatus.ESME_RX_T_APPN if p.short_message == b"b2"
                else CommandStatus.ESME_ROK for p in pdus]

    settings = ConnectorSettings(system_id="t", password="p", port=port, binds=2)
    connector = SmppConnector("sim", settings, on_deliver)
    connector.start()
    try:
        assert await connector.wait_bound(5)
        for _ in range(500):
            if len(bound) == 2 and len(connector.senders) == 2:
                break
            await asyncio.sleep(0.01)
        a, b = bound

        def deliver(smsc: _Smsc, text: bytes) -> asyncio.Future[Any]:
            return asyncio.ensure_future(smsc.request(DeliverSm(short_message=text), 5))

        first = deliver(a, b"a0")
        for _ in range(500):
            if calls:
                break
            await asyncio.sleep(0.01)
        later = {text: deliver(smsc, text) for smsc, text in
                 ((a, b"a1"), (b, b"b1"), (b, b"b2"))}
        for _ in range(500):  # all three have arrived and wait behind the first batch
            if len(connector._delivered) == 3:
                break
            await asyncio.sleep(0.01)
        release.set()
        assert (await first).command_status == CommandStatus.ESME_ROK
        answers = {text: (await f).command_status for text, f in later.items()}
    finally:
        await connector.stop()
        server.close()
    assert calls[0] == [b"a0"] and sorted(calls[1]) == [b"a1", b"b1", b"b2"]
    assert len(calls) == 2
    assert answers == {b"a1": CommandStatus.ESME_ROK, b"b1": CommandStatus.ESME_ROK,
                       b"b2": CommandStatus.ESME_RX_T_APPN}
