"""uvicorn's httptools protocol with the limits it lacks (`[http]` keys).

httptools (llhttp) has no limit on the request line, on the size or number of
header lines, on how long a client may take to send them, or on the body (the
application counts that, after the fact); uvicorn's only timeout is the idle
keep-alive one. A few connections each sending one endless header grew a
worker by hundreds of MB, and slowloris connections were held forever. This
protocol class (passed to uvicorn as `http=`) enforces, per connection:

- `max_request_line` bytes of request target → 414 `uri_too_long`;
- `max_header_bytes` of request head (request line and header lines, counted
  as they arrive, finished or not) and `max_headers` header lines → 431
  `headers_too_large`;
- `max_body_bytes`, by Content-Length before the application runs or counted
  as a chunked body arrives → 413 `payload_too_large`;
- `header_timeout` seconds from a request's first byte (or the connection's
  opening) to the end of its head, and `body_timeout` seconds from there to
  the end of its body → 408 `request_timeout`;
- `max_connections` per worker: a connection over it is answered 503
  `too_many_connections` and closed.

Every refusal is a problem+json response with `Connection: close`, after which
the connection is closed: the rest of the request is never read.

It also answers the hot routes (`POST /v1/messages`) itself, without ASGI:
uvicorn's request cycle (scope, `receive`/`send` messages, header checks) cost
about 20 µs of the ~30 µs uvicorn spends per request, a sixth of the gateway's
whole CPU per message at one message per request (docs/benchmarks.md). Such a
route is an `async (client, headers, body) -> (status, headers, body)`; a
request pipelined behind another one on its connection goes the ASGI way,
which queues it, so answers never leave out of order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.core import logs
from gateway.core.config import HttpSettings

log = logs.get("smsgw.http")


class _Refused(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def refusal(status: int, code: str, detail: str) -> bytes:
    """A whole HTTP/1.1 problem+json response that closes the connection."""
    body = orjson.dumps({
        "type": f"https://smsgw.dev/problems/{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
    })
    return b"".join([
        STATUS_LINE[status],
        b"content-type: application/problem+json\r\n",
        b"content-length: ", str(len(body)).encode(), b"\r\n",
        b"connection: close\r\n\r\n",
        body,
    ])


Headers = list[tuple[bytes, bytes]]
ReadBody = Callable[[], Awaitable[bytes | None]]
# (client address, request headers, read the body) -> (status, headers, body),
# or None when the client went away before its body arrived.
DirectRoute = Callable[[tuple[str, int] | None, Headers, ReadBody],
                       Awaitable[tuple[int, Headers, bytes] | None]]


def protocol_class(limits: HttpSettings,
                   direct: dict[bytes, DirectRoute] | None = None) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, bound to these limits and
    answering `POST` to the paths in `direct` itself."""

    class Protocol(LimitedProtocol):
        settings = limits
        routes = direct or {}

    return Protocol


class _DirectCycle:
    """What uvicorn's protocol reads and sets on a request's cycle (body
    arriving, disconnect, keep-alive, response done), for a request answered
    by a direct route."""

    __slots__ = ("body", "disconnected", "expect_100_continue", "flow", "keep_alive",
                 "message_event", "more_body", "response_complete", "response_started",
                 "transport")

    def __init__(self, protocol: HttpToolsProtocol, keep_alive: bool) -> None:
        self.flow, self.transport = protocol.flow, protocol.transport
        self.expect_100_continue = protocol.expect_100_continue
        self.keep_alive = keep_alive
        self.body = b""
        self.more_body = True
        self.disconnected = self.response_started = self.response_complete = False
        self.message_event = asyncio.Event()

    async def read_body(self) -> bytes | None:
        """The whole body (held to `max_body_bytes` by the protocol), or None
        if the client went away first."""
        while self.more_body and not self.disconnected:
            if self.expect_100_continue and not self.transport.is_closing():
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.expect_100_continue = False
            self.flow.resume_reading()
            self.message_event.clear()
            await self.message_event.wait()
        return None if self.disconnected else self.body


class LimitedProtocol(HttpToolsProtocol):
    settings: HttpSettings
    routes: dict[bytes, DirectRoute]

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._in_head = True       # the current request's head is not complete yet
        self._head_bytes = 0       # bytes received while it was not
        self._header_count = 0
        self._header_size = 0      # url + header names and values, exactly
        self._body_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False

    # --- connection ----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.settings.max_connections:
            log.warning("connection_refused", reason="max_connections",
                        limit=self.settings.max_connections)
            self._refuse(503, "too_many_connections",
                         f"this worker holds {self.settings.max_connections} connections")
            return
        self._arm(self.settings.header_timeout, "header")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
            if self._in_head:
                self._head_bytes += len(data)
                if self._head_bytes > self.settings.max_header_bytes:
                    raise _Refused(431, "headers_too_large",
                                   f"request head over {self.settings.max_header_bytes} bytes")
        except _Refused as exc:
            self._refuse(exc.status, exc.code, exc.detail)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self._refuse(cause.status, cause.code, cause.detail)
            else:
                self._refuse(400, "bad_request", "invalid HTTP request")
        except httptools.HttpParserUpgrade:
            self._refuse(400, "bad_request", "protocol upgrades are not supported")
        except httptools.HttpParserError:
            self._refuse(400, "bad_request", "invalid HTTP request")

    # --- parser callbacks ------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._header_count = self._header_size = self._body_bytes = 0
        if self._timer is None:
            self._arm(self.settings.header_timeout, "header")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._header_size += len(url)
        if len(self.url) > self.settings.max_request_line:
            raise _Refused(414, "uri_too_long",
                           f"request target over {self.settings.max_request_line} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_size += len(name) + len(value) + 4
        if self._header_count > self.settings.max_headers:
            raise _Refused(431, "headers_too_large",
                           f"more than {self.settings.max_headers} header lines")
        if self._header_size > self.settings.max_header_bytes:
            raise _Refused(431, "headers_too_large",
                           f"request head over {self.settings.max_header_bytes} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        limit = self.settings.max_body_bytes
        for name, value in self.headers:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise _Refused(413, "payload_too_large", f"body over {limit} bytes")
        route = self.routes.get(self.url)
        if (route is not None and self.parser.get_method() == b"POST"
                and (self.cycle is None or self.cycle.response_complete)
                and not self.parser.should_upgrade()):
            keep_alive = (self.parser.get_http_version() != "1.0"
                          and self.parser.should_keep_alive())
            cycle = _DirectCycle(self, keep_alive)
            self.cycle = cycle  # type: ignore[assignment]
            task = self.loop.create_task(self._answer(route, cycle, self.client, self.headers))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)
        else:
            super().on_headers_complete()
        if self.cycle is not None and self.cycle.more_body:
            self._arm(self.settings.body_timeout, "body")

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.settings.max_body_bytes:
            raise _Refused(413, "payload_too_large",
                           f"body over {self.settings.max_body_bytes} bytes")
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # --- direct routes -----------------------------------------------------------

    async def _answer(self, route: DirectRoute, cycle: _DirectCycle,
                      client: tuple[str, int] | None, headers: Headers) -> None:
        try:
            answer = await route(client, headers, cycle.read_body)
        except Exception as exc:  # the route answers its own errors: this is a bug
            log.error("unhandled_error", error=repr(exc), exc_info=exc)
            if not cycle.response_complete:
                self._refuse(500, "internal_error", "the gateway could not handle this request")
            return
        if cycle.response_complete:  # refused meanwhile (a limit, a timeout)
            return
        cycle.response_started = cycle.response_complete = True
        if answer is None or cycle.disconnected or self.transport.is_closing():
            if not self.transport.is_closing():
                self.transport.close()
            return
        status, response_headers, body = answer
        lines = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            lines += (name, b": ", value, b"\r\n")
        closes = False  # the route's own "connection: close"
        for name, value in response_headers:
            closes = closes or (name == b"connection" and value.lower() == b"close")
            lines += (name, b": ", value, b"\r\n")
        keep_alive = cycle.keep_alive and not closes
        if not keep_alive and not closes:
            lines.append(b"connection: close\r\n")
        lines += (b"\r\n", body)
        self.transport.write(b"".join(lines))
        if keep_alive:
            self.on_response_complete()
        else:
            self.transport.close()

    # --- refusals and timers ---------------------------------------------------

    def _refuse(self, status: int, code: str, detail: str) -> None:
        """Answer (unless a response already started) and close the connection."""
        self._refused = True
        self._disarm()
        cycle = self.cycle
        started = cycle is not None and cycle.response_started
        if cycle is not None and not cycle.response_complete:
            # The application, if it runs, sees a disconnect; what it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        if not self.transport.is_closing():
            if not started:
                self.transport.write(refusal(status, code, detail))
            self.transport.close()
        if status != 503:
            log.info("request_refused", status=status, code=code,
                     client=self.client[0] if self.client else None)

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out, phase)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self, phase: str) -> None:
        self._timer = None
        seconds = self.settings.header_timeout if phase == "header" else self.settings.body_timeout
        self._refuse(408, "request_timeout", f"the request {phase} took over {seconds} s")
