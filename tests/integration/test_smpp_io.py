"""The asyncio glue on real loopback sockets: timeouts, lost connections."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.connectors.smpp import SmppConnector
from gateway.core.config import ConnectorSettings
from gateway.core.events import Event, Mo
from gateway.core.smpp_transport import SmppProtocol
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

    async def on_deliver(events: Sequence[Event]) -> list[bool]:
        texts = [e.text.encode() for e in events if isinstance(e, Mo)]
        calls.append(texts)
        if len(calls) == 1:
            await release.wait()
        return [text != b"b2" for text in texts]  # b2: not taken, to be sent again

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


# --- the connector's own tasks: nothing ends silently ---------------------------------


async def _wait(predicate: Any, seconds: float = 10.0) -> bool:
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """The log events of the test, as structlog hands them over."""
    with capture_logs() as captured:
        yield captured


def _logged(events: list[dict[str, Any]], event: str) -> bool:
    return any(e["event"] == event and e.get("connector") == "sim" for e in events)


async def test_an_unexpected_error_while_binding_is_logged_and_the_bind_comes_back(
        monkeypatch: pytest.MonkeyPatch, events: list[dict[str, Any]]) -> None:
    loop = asyncio.get_running_loop()
    bound: list[_Smsc] = []
    server = await loop.create_server(lambda: _Smsc(bound), "127.0.0.1", 0)
    settings = ConnectorSettings(system_id="t", password="p",
                                 port=server.sockets[0].getsockname()[1], binds=1)

    async def no_deliver(events: Sequence[Event]) -> list[bool]:
        return [True for _ in events]

    connector = SmppConnector("sim", settings, no_deliver)
    real, calls = connector._bind_once, []

    async def buggy_once(kind: Any) -> Any:
        calls.append(kind)
        if len(calls) == 1:
            raise RuntimeError("a bug in the bind path")
        return await real(kind)

    monkeypatch.setattr(connector, "_bind_once", buggy_once)
    connector.start()
    try:
        assert await connector.wait_bound(10)
        assert len(calls) == 2 and len(bound) == 1
        assert _logged(events, "bind_task_failed")
    finally:
        await connector.stop()
        server.close()


async def test_a_keepalive_that_fails_unexpectedly_closes_its_bind_which_rebinds(
        monkeypatch: pytest.MonkeyPatch, events: list[dict[str, Any]]) -> None:
    from gateway.connectors import smpp as smpp_connector

    loop = asyncio.get_running_loop()
    bound: list[_Smsc] = []
    server = await loop.create_server(lambda: _Smsc(bound), "127.0.0.1", 0)
    settings = ConnectorSettings(system_id="t", password="p",
                                 port=server.sockets[0].getsockname()[1], binds=1)
    real, calls = smpp_connector._Bind.keepalive, []

    async def buggy_keepalive(self: Any, interval: float, timeout: float) -> None:
        calls.append(self)
        if len(calls) == 1:
            raise RuntimeError("a bug in the keep-alive")
        await real(self, interval, timeout)

    monkeypatch.setattr(smpp_connector._Bind, "keepalive", buggy_keepalive)

    async def no_deliver(events: Sequence[Event]) -> list[bool]:
        return [True for _ in events]

    connector = SmppConnector("sim", settings, no_deliver)
    connector.start()
    try:
        assert await _wait(lambda: len(calls) == 2 and len(connector.senders) == 1)
        assert len(bound) == 2  # the first bind was closed and a new one made
        assert _logged(events, "keepalive_failed")
    finally:
        await connector.stop()
        server.close()


async def test_a_receipt_handler_answering_the_wrong_count_is_logged_and_nacked(
        events: list[dict[str, Any]]) -> None:
    loop = asyncio.get_running_loop()
    bound: list[_Smsc] = []
    server = await loop.create_server(lambda: _Smsc(bound), "127.0.0.1", 0)
    settings = ConnectorSettings(system_id="t", password="p",
                                 port=server.sockets[0].getsockname()[1], binds=1)

    async def on_deliver(events: Sequence[Event]) -> list[bool]:
        if isinstance(events[0], Mo) and events[0].text == "bug":
            return []  # a bug: no answer for the event
        return [True for _ in events]

    connector = SmppConnector("sim", settings, on_deliver)
    connector.start()
    try:
        assert await connector.wait_bound(10) and await _wait(lambda: len(bound) == 1)
        smsc = bound[0]
        first = await smsc.request(DeliverSm(short_message=b"bug"), 5)
        second = await smsc.request(DeliverSm(short_message=b"fine"), 5)
    finally:
        await connector.stop()
        server.close()
    assert first.command_status == CommandStatus.ESME_RSYSERR  # the SMSC will resend it
    assert second.command_status == CommandStatus.ESME_ROK
    assert _logged(events, "deliver_sm_failed")


async def test_a_connection_to_itself_is_dropped_so_the_smsc_can_listen_there_later(
        monkeypatch: pytest.MonkeyPatch, events: list[dict[str, Any]]) -> None:
    """Nothing listens on the SMSC's port yet, and the connection's local end
    is that same port (what the kernel may pick in its ephemeral range): TCP
    connects the socket to itself. The connector drops it, so the port is free
    for the SMSC, and binds once the SMSC listens."""
    from gateway.run.embedded_redis import free_port

    port = free_port()
    loop = asyncio.get_running_loop()
    real = loop.create_connection
    forced: list[int] = []

    async def from_the_same_port(*args: Any, **kwargs: Any) -> Any:
        if not forced:  # the first attempt only, as the kernel's pick would be
            forced.append(port)
            kwargs["local_addr"] = ("127.0.0.1", port)
        return await real(*args, **kwargs)

    monkeypatch.setattr(loop, "create_connection", from_the_same_port)

    async def no_deliver(events: Sequence[Event]) -> list[bool]:
        return [True for _ in events]

    settings = ConnectorSettings(system_id="t", password="p", port=port, binds=1)
    connector = SmppConnector("sim", settings, no_deliver)
    connector.start()
    server = None
    try:
        assert await _wait(lambda: any("connected to itself" in str(e.get("error"))
                                       for e in events))
        bound: list[_Smsc] = []
        for _ in range(100):  # the dropped socket is closed on the loop's next turns
            try:
                server = await loop.create_server(lambda: _Smsc(bound), "127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        assert server is not None, f"port {port} still held"
        assert await connector.wait_bound(15)
        assert len(bound) == 1
    finally:
        await connector.stop()
        if server is not None:
            server.close()
