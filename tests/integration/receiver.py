"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 (port picked at
run time, or given, so it can come back on the same port) that checks every
signature (HMAC over "<X-Smsgw-Timestamp>.<body>") and answers by a script.
It takes single events and batches ({"results": [...]}) alike."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# answer(index of the request, its events) -> HTTP status
Answer = Callable[[int, list[dict[str, Any]]], int]


class Receiver:
    def __init__(
        self,
        secret: str,
        answer: Answer | None = None,
        delay: float = 0.0,
        port: int = 0,
    ) -> None:
        self.secret = secret.encode()
        self.answer = answer or (lambda _index, _events: 200)
        self.delay = delay
        # every request in arrival order: events, batched, raw, headers, status
        # (None while it is being answered)
        self.requests: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def signed(self, headers: Any, raw: bytes) -> bool:
        stamp = headers.get("X-Smsgw-Timestamp", "")
        mac = hmac.new(self.secret, stamp.encode() + b"." + raw, hashlib.sha256)
        return hmac.compare_digest("sha256=" + mac.hexdigest(),
                                   headers.get("X-Smsgw-Signature", ""))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                good = receiver.signed(self.headers, raw)
                body = json.loads(raw)
                batched = isinstance(body, dict) and "results" in body
                events = body["results"] if batched else [body]
                request: dict[str, Any] = {
                    "events": events, "batched": batched, "raw": raw,
                    "headers": dict(self.headers), "status": None,
                }
                with receiver._lock:
                    index = len(receiver.requests)
                    receiver.requests.append(request)
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._lock:
                    if not good:
                        receiver.bad_signatures += 1
                    status = receiver.answer(index, events) if good else 401
                    request["status"] = status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def start(self) -> Receiver:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def taken(self) -> list[dict[str, Any]]:
        """Every event of a request answered 2xx, in arrival order."""
        with self._lock:
            return [e for r in self.requests if r["status"] is not None
                    and 200 <= r["status"] < 300 for e in r["events"]]

    def statuses(self, message_id: str) -> list[str]:
        """Statuses of one message in the order they were taken (answered 2xx)."""
        return [e["status"] for e in self.taken() if e.get("id") == message_id]

    def finals(self) -> dict[str, int]:
        """Message id -> how many times a final status of it was taken."""
        out: dict[str, int] = {}
        for e in self.taken():
            if e.get("status") in FINALS:
                out[e["id"]] = out.get(e["id"], 0) + 1
        return out


FINALS = frozenset({"delivered", "undelivered", "expired", "rejected", "failed", "canceled"})
