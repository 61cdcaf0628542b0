"""A fast webhook receiver for load tests: counts status callbacks where a user
would, at the receiving end.

``python -m loadtest.receiver --port P --secret S --stats-file F`` listens on
HTTP/1.1 with keep-alive and answers every request ``200`` with an empty body
at once, so the figure measured is the gateway's, not the receiver's. A body is
one event (a JSON object) or a batch ``{"results": [event, ...]}``; an event
has at least ``event_id``, ``id`` (the message id) and ``status``.

Signatures (``X-Smsgw-Signature: sha256=<hex>``, docs/http-api.md) are checked
against ``--signature``: ``timestamped`` is the contract (HMAC-SHA256 over
``X-Smsgw-Timestamp + "." + body``), ``raw`` an HMAC over the body alone (the
gateway's sender before the contract's form), ``either`` accepts both and
counts which form matched, ``off`` checks nothing. A bad one is counted and
answered ``--bad-signature-status`` (200 by default; with 401 the gateway
should retry, so the body is not counted as received).

Per message id it keeps (wall-clock time the first final event arrived, final
events received, a bit per status seen, a hash of the first final's event id):
a few tuples' worth of memory per message, fine at 1,000,000. A second final
event for a message is a *duplicated final*; one with the first final's
event_id again is a redelivery of the same event (at least once, allowed by
the contract), one with another event_id a second final status (never allowed).

Totals and a once-a-second series go to ``--stats-file`` every second (replaced
atomically, so a reader never sees half a file); the per-message table goes to
``--messages-file`` (default: the stats file with ``.messages.json``) on
SIGUSR1 and on SIGTERM/SIGINT, when the stats file is written a last time too.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools
import orjson

FINAL = frozenset({"delivered", "undelivered", "expired", "rejected", "failed", "canceled"})
STATUSES = ("accepted", "scheduled", "queued", "submitted",
            "delivered", "undelivered", "expired", "rejected", "failed", "canceled")
STATUS_BIT = {s: 1 << k for k, s in enumerate(STATUSES)}
SIGNATURE_MODES = ("timestamped", "raw", "either", "off")
SERIES_MAX = 36_000  # ten hours of 1 s samples

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_UNAUTHORIZED = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def statuses_of(mask: int) -> list[str]:
    return [s for s in STATUSES if mask & STATUS_BIT[s]]


@dataclass
class ReceiverConfig:
    host: str = "127.0.0.1"
    port: int = 0
    secret: str = ""
    signature: str = "timestamped"
    bad_signature_status: int = 200
    stats_file: str | None = None
    messages_file: str | None = None
    interval: float = 1.0


@dataclass
class Tally:
    connections: int = 0  # opened: more than the sender's pool means it does not keep them
    requests: int = 0
    events: int = 0
    final_events: int = 0
    # messages with at least one final event (a message counts once)
    finals: int = 0
    duplicated_finals: int = 0
    # of those: the same event again (a redelivery) / a second, different final event
    redelivered_finals: int = 0
    second_finals: int = 0
    bad_signatures: int = 0
    signatures: Counter[str] = field(default_factory=Counter)  # which form matched
    bad_bodies: int = 0
    unknown_statuses: Counter[str] = field(default_factory=Counter)
    batch_sizes: Counter[int] = field(default_factory=Counter)
    first_request_at: float | None = None
    last_request_at: float | None = None
    first_final_at: float | None = None
    last_final_at: float | None = None
    # (t, requests, events, final events), once a second
    series: list[tuple[float, int, int, int]] = field(default_factory=list)
    # message id -> (first final at or None, final events, status bits, hash of the
    # first final's event_id)
    messages: dict[str, tuple[float | None, int, int, int]] = field(default_factory=dict)

    def take(self, event: Any, now: float) -> None:
        if not isinstance(event, dict):
            self.bad_bodies += 1
            return
        mid, status = event.get("id"), event.get("status")
        if not isinstance(mid, str) or not isinstance(status, str):
            self.bad_bodies += 1
            return
        self.events += 1
        bit = STATUS_BIT.get(status, 0)
        if not bit:
            self.unknown_statuses[status] += 1
        at, count, mask, first_event = self.messages.get(mid, (None, 0, 0, 0))
        mask |= bit
        if status in FINAL:
            self.final_events += 1
            self.last_final_at = now
            if self.first_final_at is None:
                self.first_final_at = now
            event_hash = hash(event.get("event_id"))
            if count == 0:
                self.finals += 1
                at, first_event = now, event_hash
            else:
                self.duplicated_finals += 1
                if event_hash == first_event:
                    self.redelivered_finals += 1
                else:
                    self.second_finals += 1
            count += 1
        self.messages[mid] = (at, count, mask, first_event)

    def sample(self, now: float) -> None:
        if not self.series or now - self.series[-1][0] >= 0.9:
            self.series.append((round(now, 3), self.requests, self.events, self.final_events))
            del self.series[:-SERIES_MAX]

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k != "messages"}
        out["batch_sizes"] = {str(k): v for k, v in sorted(self.batch_sizes.items())}
        out["message_ids"] = len(self.messages)
        out["t"] = time.time()
        return out

    def messages_table(self) -> dict[str, list[Any]]:
        return {mid: [at, count, statuses_of(mask)]
                for mid, (at, count, mask, _) in self.messages.items()}


class Receiver:
    def __init__(self, config: ReceiverConfig) -> None:
        if config.signature not in SIGNATURE_MODES:
            raise ValueError(f"--signature must be one of {', '.join(SIGNATURE_MODES)}")
        self.config = config
        self.tally = Tally()
        self._key = config.secret.encode()
        self._server: asyncio.base_events.Server | None = None
        self.port = config.port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.config.host, self.config.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def verify(self, signature: bytes | None, timestamp: bytes | None, body: bytes) -> bool:
        mode = self.config.signature
        if mode == "off":
            return True
        if signature is None or not signature.startswith(b"sha256="):
            self.tally.signatures["missing"] += 1
            return False
        given = signature[7:].decode("ascii", "replace")
        if mode != "raw" and timestamp is not None:
            mac = hmac.new(self._key, timestamp + b"." + body, hashlib.sha256).hexdigest()
            if hmac.compare_digest(mac, given):
                self.tally.signatures["timestamped"] += 1
                return True
        if mode != "timestamped":
            mac = hmac.new(self._key, body, hashlib.sha256).hexdigest()
            if hmac.compare_digest(mac, given):
                self.tally.signatures["raw"] += 1
                return True
        return False

    def request(self, signature: bytes | None, timestamp: bytes | None, body: bytes) -> bytes:
        """One complete request: tally it, return the response status line's bytes."""
        t = self.tally
        now = time.time()
        t.requests += 1
        if t.first_request_at is None:
            t.first_request_at = now
        t.last_request_at = now
        if not self.verify(signature, timestamp, body):
            t.bad_signatures += 1
            if self.config.bad_signature_status == 401:
                return _UNAUTHORIZED
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            t.bad_bodies += 1
            return _OK
        if isinstance(data, dict) and isinstance(data.get("results"), list):
            events = data["results"]
            t.batch_sizes[len(events)] += 1
            for event in events:
                t.take(event, now)
        else:
            t.batch_sizes[1] += 1
            t.take(data, now)
        return _OK

    def write_stats(self, messages: bool = False) -> dict[str, Any]:
        self.tally.sample(time.time())
        summary = self.tally.summary()
        summary["port"] = self.port
        # Totals first: a reader that waits for a new table then finds totals as new.
        if self.config.stats_file:
            _replace(self.config.stats_file, orjson.dumps(summary))
        if messages and self.config.messages_file:
            _replace(self.config.messages_file, orjson.dumps(self.tally.messages_table()))
        return summary


def _replace(path: str, data: bytes) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


class _Connection(asyncio.Protocol):
    """httptools drives the callbacks below; responses to one read go out in one write."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._body: list[bytes] = []
        self._signature: bytes | None = None
        self._timestamp: bytes | None = None
        self._close = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.receiver.tally.connections += 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._out.append(_BAD_REQUEST)
            self._close = True
        if self.transport is None:
            return
        if self._out:
            self.transport.write(b"".join(self._out))
            self._out.clear()
        if self._close:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    # --- httptools callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        self._body.clear()
        self._signature = self._timestamp = None

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"x-smsgw-signature":
            self._signature = value
        elif name == b"x-smsgw-timestamp":
            self._timestamp = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        response = self.receiver.request(self._signature, self._timestamp, body)
        if not self.parser.should_keep_alive():
            self._close = True
            response = _OK_CLOSE if response is _OK else response
        self._out.append(response)


async def serve(config: ReceiverConfig) -> dict[str, Any]:
    receiver = Receiver(config)
    await receiver.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: receiver.write_stats(messages=True))
    print(orjson.dumps({"event": "receiver_listening", "host": config.host,
                        "port": receiver.port}).decode(), flush=True)
    try:
        while not stop.is_set():
            receiver.write_stats()
            try:
                await asyncio.wait_for(stop.wait(), config.interval)
            except TimeoutError:
                pass
    finally:
        await receiver.close()
        summary = receiver.write_stats(messages=True)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--host", default="127.0.0.1")
    a("--port", type=int, default=0, help="0: pick a free port (printed, and in the stats)")
    a("--secret", default="", help="the account's callback_secret")
    a("--signature", choices=SIGNATURE_MODES, default="timestamped",
      help="which X-Smsgw-Signature form is good (either: timestamped or raw body)")
    a("--bad-signature-status", type=int, choices=(200, 401), default=200,
      help="answer to a bad signature (401: not counted as received, the sender retries)")
    a("--stats-file", default=None, help="totals as JSON, rewritten every second and on exit")
    a("--messages-file", default=None,
      help="per-message table, written on SIGUSR1 and on exit "
           "(default: STATS_FILE with .messages.json)")
    a("--interval", type=float, default=1.0, help="seconds between stats writes")


def config_from_args(args: argparse.Namespace) -> ReceiverConfig:
    messages_file = args.messages_file
    if messages_file is None and args.stats_file:
        messages_file = str(Path(args.stats_file).with_suffix(".messages.json"))
    return ReceiverConfig(
        host=args.host, port=args.port, secret=args.secret, signature=args.signature,
        bad_signature_status=args.bad_signature_status, stats_file=args.stats_file,
        messages_file=messages_file, interval=args.interval,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.receiver",
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    config = config_from_args(parser.parse_args(argv))
    try:
        import uvloop

        summary = uvloop.run(serve(config))
    except ImportError:
        summary = asyncio.run(serve(config))
    summary.pop("series", None)
    sys.stdout.write(orjson.dumps({"event": "receiver_summary", **summary}).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
