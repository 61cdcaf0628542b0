"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 (port picked at
run time, or given, so it can come back on the same port) that checks every
signature and answers by a script."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(
        self,
        secret: str,
        answer: Callable[[dict[str, Any], int], int] | None = None,
        delay: float = 0.0,
        port: int = 0,
    ) -> None:
        self.secret = secret.encode()
        # answer(body, how many times this event id came before) -> HTTP status
        self.answer = answer or (lambda _body, _seen: 200)
        self.delay = delay
        self.requests: list[dict[str, Any]] = []  # every request, in arrival order
        self.bad_signatures = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(receiver.secret, raw, hashlib.sha256).hexdigest()
                good = hmac.compare_digest(expected, self.headers.get("X-Smsgw-Signature", ""))
                body = json.loads(raw)
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._lock:
                    seen = sum(
                        1 for r in receiver.requests if r["body"]["event_id"] == body["event_id"]
                    )
                    if not good:
                        receiver.bad_signatures += 1
                    status = receiver.answer(body, seen) if good else 401
                    receiver.requests.append({
                        "body": body, "raw": raw, "headers": dict(self.headers), "status": status,
                    })
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

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r["body"] for r in self.requests]

    def statuses(self, message_id: str) -> list[str]:
        """Statuses of one message in the order they were taken (answered 2xx)."""
        with self._lock:
            return [
                r["body"]["status"] for r in self.requests
                if r["body"].get("id") == message_id and 200 <= r["status"] < 300
            ]
