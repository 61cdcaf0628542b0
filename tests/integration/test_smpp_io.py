"""The asyncio glue on real loopback sockets: timeouts, lost connections."""

from __future__ import annotations

import asyncio

import pytest

from gateway.smpp_io import SmppProtocol
from protocols.smpp import EnquireLink, Role


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
