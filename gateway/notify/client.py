"""The webhook sender's HTTP/1.1 client: POST a body, read the status.

Written here rather than taken from a library because the library clients cost
four times what the request itself does: aiohttp ~147 µs and aiosonic ~154 µs
of CPU per POST against ~35 µs for a plain HTTP/1.1 request on the same
machine (docs/dependencies.md), and with one event per request that was over a
third of the gateway's CPU. It does only what the sender needs:

- `POST` with the caller's headers and a body; no redirects (a 3xx is a
  failed delivery), no proxy, no cookies, no decompression;
- keep-alive connections pooled per (scheme, host, port), at most
  `max_idle` idle per host, closed once idle for `keepalive` seconds; a
  request on a pooled connection that the server closed before answering is
  sent once more on a new connection (as browsers and aiohttp do);
- responses parsed by httptools (llhttp, the parser uvicorn uses): the status,
  and the body read and dropped up to `max_answer` bytes (a longer one closes
  the connection rather than be read to its end); chunked, Content-Length or
  read-until-close bodies;
- TLS for `https` with the default trust store (`SSL_CERT_FILE` honoured) and
  host name checking;
- the address connected to is checked against the account's callback target
  rules after DNS, on every new connection (gateway.admission.callbacks), so DNS
  rebinding cannot reach a refused address; a pooled connection is one such a
  check let through, and pools are per account;
- one deadline (`timeout`) over connect, send and the whole response.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from typing import cast
from urllib.parse import urlsplit

import httptools

from gateway.core.targets import RefusedTarget, TargetPolicy


class HttpFailure(Exception):
    """A request that got no HTTP answer; `reason` names why (for metrics)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


class _Target:
    __slots__ = ("host", "port", "request_head", "scheme")

    def __init__(self, url: str, user_agent: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpFailure("invalid_url", f"not an http(s) URL: {url}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        host_header = parts.netloc.rpartition("@")[2]
        self.request_head = (
            f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {user_agent}\r\n"
        ).encode("latin-1")


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one request at a time."""

    def __init__(self, max_answer: int) -> None:
        self.max_answer = max_answer
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[int] | None = None
        self._status = 0
        self._headers_done = False
        self._body_bytes = 0
        self._answered = False  # any byte of the current response arrived
        self.reusable = False

    # asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self._answered = True
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection is not ours to trust
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpFailure("bad_response", str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done:  # a body read until close, or cut short: the status stands
            waiter.set_result(self._status)
        elif self._answered:
            waiter.set_exception(HttpFailure("server_disconnected", "closed mid-response"))
        else:
            waiter.set_exception(_NoAnswer())

    # httptools
    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.max_answer:
            self.reusable = False
            self._finish()
            self.close()

    def on_message_complete(self) -> None:
        self.reusable = self._parser.should_keep_alive()
        self._finish()

    # ours
    def request(self, data: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._status, self._headers_done, self._body_bytes = 0, False, 0
        self._answered = self.reusable = False
        self.transport.write(data)
        return self._waiter

    def _finish(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(self._status)

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()


class _NoAnswer(Exception):
    """The connection closed before any byte of the response."""


class WebhookClient:
    """POSTs for one account (its callback target rules decide what DNS
    answers may be connected to)."""

    def __init__(self, policy: TargetPolicy, user_agent: str, timeout: float,
                 max_answer: int, max_idle: int, keepalive: float = 30.0) -> None:
        self.policy, self.user_agent, self.timeout = policy, user_agent, timeout
        self.max_answer, self.max_idle, self.keepalive = max_answer, max_idle, keepalive
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._tls: ssl.SSLContext | None = None

    async def post(self, url: str, headers: bytes, body: bytes) -> int:
        """The response's status. `headers` are whole header lines
        (b"Name: value\\r\\n" each), sent after Host and User-Agent. Raises
        HttpFailure (or RefusedTarget) when no HTTP answer came."""
        target = self._target(url)
        data = b"".join((target.request_head, headers,
                         b"Content-Length: %d\r\n\r\n" % len(body), body))
        try:
            async with asyncio.timeout(self.timeout):
                conn = self._pooled(target)
                if conn is not None:
                    try:
                        return await self._exchange(target, conn, data)
                    except _NoAnswer:
                        pass  # the server closed it while it was idle: once more, new
                conn = await self._connect(target)
                try:
                    return await self._exchange(target, conn, data)
                except _NoAnswer:
                    raise HttpFailure("server_disconnected", "closed before answering") from None
        except TimeoutError:
            raise HttpFailure("timeout") from None
        except OSError as exc:
            if isinstance(exc, RefusedTarget):
                raise
            raise HttpFailure("connect_error" if isinstance(exc, ConnectionError | socket.gaierror)
                              else type(exc).__name__.lower(), str(exc)) from None

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= 10_000:
                self._targets.clear()
            target = self._targets[url] = _Target(url, self.user_agent)
        return target

    def _pooled(self, target: _Target) -> _Connection | None:
        conns = self._idle.get((target.scheme, target.host, target.port))
        now = time.monotonic()
        while conns:
            conn = conns.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive:
                return conn
            conn.close()
        return None

    async def _exchange(self, target: _Target, conn: _Connection, data: bytes) -> int:
        try:
            status = await conn.request(data)
        except BaseException:
            conn.close()
            raise
        if conn.reusable and not conn.closed:
            key = (target.scheme, target.host, target.port)
            conns = self._idle.setdefault(key, [])
            if len(conns) < self.max_idle:
                conn.idle_since = time.monotonic()
                conns.append(conn)
                return status
        conn.close()
        return status

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        addresses = await self._addresses(target)
        tls = self._context() if target.scheme == "https" else None
        last: OSError | None = None
        for address in addresses:
            try:
                _, conn = await loop.create_connection(
                    lambda: _Connection(self.max_answer), address, target.port,
                    ssl=tls, server_hostname=target.host if tls is not None else None)
            except OSError as exc:
                last = exc
                continue
            return conn
        assert last is not None
        raise last

    async def _addresses(self, target: _Target) -> list[str]:
        """The addresses `target.host` resolves to that the rules allow
        (RefusedTarget when none is); a literal address is judged as it is."""
        host = target.host
        try:
            ipaddress.ip_address(host)
            found = [host]
        except ValueError:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, target.port, type=socket.SOCK_STREAM)
            found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        return self.policy.allowed_addresses(host, found)

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls
