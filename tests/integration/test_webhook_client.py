"""gateway.notify.client against real servers on loopback: keep-alive reuse, a
pooled connection the server closed, chunked and oversized answers, a server
that never answers, TLS with a CA the test makes, refused addresses."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trustme

from gateway.core.targets import RefusedTarget, TargetPolicy
from gateway.notify.client import HttpFailure, WebhookClient

LOOPBACK = TargetPolicy(["127.0.0.0/8"])
HEADERS = b"Content-Type: application/json\r\n"

# (request number on its connection, connections so far) -> bytes to answer
Answer = Callable[[int, int], bytes]


def ok(body: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def serve(answer: Answer, tls: ssl.SSLContext | None = None
                ) -> tuple[asyncio.Server, list[bytes], list[int]]:
    """A server that answers each complete request by `answer`; every request
    seen, and per connection how many it carried."""
    seen: list[bytes] = []
    per_conn: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        per_conn.append(0)
        index = len(per_conn) - 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                seen.append(head + await reader.readexactly(length))
                per_conn[index] += 1
                reply = answer(per_conn[index], len(per_conn))
                if reply == b"hang":
                    await asyncio.sleep(30)
                writer.write(reply)
                await writer.drain()
                if b"Connection: close" in reply:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    return server, seen, per_conn


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


def url_of(server: asyncio.Server, scheme: str = "http", host: str = "127.0.0.1") -> str:
    return f"{scheme}://{host}:{server.sockets[0].getsockname()[1]}/hook?x=1"


def test_keep_alive_reuses_one_connection_and_sends_the_headers_and_body() -> None:
    async def test() -> None:
        server, seen, per_conn = await serve(lambda _n, _c: ok(b"thanks"))
        client = WebhookClient(LOOPBACK, "ua/1", 5.0, 1024, max_idle=4)
        try:
            for i in range(5):
                assert await client.post(url_of(server), HEADERS, b'{"n":%d}' % i) == 200
        finally:
            await client.close()
            server.close()
        assert per_conn == [5]
        assert seen[0].startswith(b"POST /hook?x=1 HTTP/1.1\r\n")
        assert b"User-Agent: ua/1\r\n" in seen[0] and b"Content-Length: 7\r\n" in seen[0]
        assert seen[4].endswith(b'\r\n\r\n{"n":4}')
    run(test)


def test_a_server_closing_an_idle_keep_alive_connection_costs_no_failure() -> None:
    async def test() -> None:
        conns: list[asyncio.StreamWriter] = []
        requests = 0

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal requests
            conns.append(writer)
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
                    requests += 1
                    writer.write(ok())
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        client = WebhookClient(LOOPBACK, "ua/1", 5.0, 1024, max_idle=4)
        try:
            assert await client.post(url_of(server), HEADERS, b"{}") == 200
            conns[0].close()  # the server's idle timeout
            await asyncio.sleep(0.1)
            assert await client.post(url_of(server), HEADERS, b"{}") == 200
        finally:
            await client.close()
            server.close()
        assert requests == 2 and len(conns) == 2
    run(test)


def test_chunked_read_until_close_and_oversized_answers_give_their_status() -> None:
    chunked = (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\n\r\n")
    until_close = b"HTTP/1.0 202 Accepted\r\nConnection: close\r\n\r\nbody until close"
    oversized = ok(b"x" * 5000)

    async def test() -> None:
        server, _seen, per_conn = await serve(lambda n, _c: chunked if n == 1 else ok())
        client = WebhookClient(LOOPBACK, "ua/1", 5.0, 1024, max_idle=4)
        try:
            assert await client.post(url_of(server), HEADERS, b"{}") == 201
            assert await client.post(url_of(server), HEADERS, b"{}") == 200
        finally:
            await client.close()
            server.close()
        assert per_conn == [2]  # the chunked answer was read to its end and reused

    async def test_close_and_oversize() -> None:
        server, _seen, per_conn = await serve(
            lambda _n, c: until_close if c == 1 else oversized if c == 2 else ok())
        client = WebhookClient(LOOPBACK, "ua/1", 5.0, 1024, max_idle=4)
        try:
            assert await client.post(url_of(server), HEADERS, b"{}") == 202
            assert await client.post(url_of(server), HEADERS, b"{}") == 200  # oversized
            assert await client.post(url_of(server), HEADERS, b"{}") == 200
        finally:
            await client.close()
            server.close()
        assert per_conn == [1, 1, 1]  # neither answer left a connection to reuse
    run(test)
    run(test_close_and_oversize)


def test_no_answer_in_time_and_no_listener_are_failures_with_a_reason() -> None:
    async def test() -> None:
        server, _seen, _ = await serve(lambda _n, _c: b"hang")
        client = WebhookClient(LOOPBACK, "ua/1", 0.3, 1024, max_idle=4)
        try:
            with pytest.raises(HttpFailure) as hung:
                await client.post(url_of(server), HEADERS, b"{}")
            port = server.sockets[0].getsockname()[1]
            server.close()
            await server.wait_closed()
            with pytest.raises(HttpFailure) as refused:
                await client.post(f"http://127.0.0.1:{port}/", HEADERS, b"{}")
            with pytest.raises(HttpFailure) as garbage:
                server2, _, _ = await serve(lambda _n, _c: b"NOT HTTP AT ALL\r\n\r\n")
                await client.post(url_of(server2), HEADERS, b"{}")
            server2.close()
        finally:
            await client.close()
        assert hung.value.reason == "timeout"
        assert refused.value.reason == "connect_error"
        assert garbage.value.reason == "bad_response"
    run(test)


def test_a_name_resolving_to_a_refused_address_is_not_connected_to() -> None:
    async def test() -> None:
        server, seen, _ = await serve(lambda _n, _c: ok())
        client = WebhookClient(TargetPolicy(), "ua/1", 5.0, 1024, max_idle=4)
        try:
            with pytest.raises(RefusedTarget):
                await client.post(url_of(server, host="localhost"), HEADERS, b"{}")
        finally:
            await client.close()
            server.close()
        assert seen == []
    run(test)


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f.1", "127.1"])
def test_loopback_written_any_way_is_refused_without_an_allowlist(host: str) -> None:
    async def test() -> None:
        server, seen, _ = await serve(lambda _n, _c: ok())
        client = WebhookClient(TargetPolicy(), "ua/1", 5.0, 1024, max_idle=4)
        try:
            with pytest.raises(RefusedTarget):
                await client.post(url_of(server, host=host), HEADERS, b"{}")
        finally:
            await client.close()
            server.close()
        assert seen == []
    run(test)


def test_https_with_a_ca_from_the_trust_store_and_the_host_name_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_tls)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))

    async def test() -> None:
        server, seen, _ = await serve(lambda _n, _c: ok(), tls=server_tls)
        allow_local = TargetPolicy(["localhost", "127.0.0.0/8"])
        trusting = WebhookClient(allow_local, "ua/1", 5.0, 1024, max_idle=4)
        try:
            with pytest.raises(HttpFailure):  # before the CA is trusted
                await WebhookClient(allow_local, "ua/1", 5.0, 1024, max_idle=4).post(
                    url_of(server, "https", "localhost"), HEADERS, b"{}")
            monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
            assert await trusting.post(url_of(server, "https", "localhost"),
                                       HEADERS, b"{}") == 200
            with pytest.raises(HttpFailure):  # the name is not the certificate's
                await trusting.post(url_of(server, "https", "127.0.0.1"), HEADERS, b"{}")
        finally:
            await trusting.close()
            server.close()
        assert len(seen) == 1
    run(test)
