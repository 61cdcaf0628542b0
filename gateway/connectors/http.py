"""Generic HTTP provider connector (the Twilio/Alibaba-style APIs).

The whole text goes in one request (providers split it themselves), built from
a JSON body template; the provider's message id is read from its answer by a
dotted path. Receipts come back to `POST /v1/receipts/{connector}` and are
correlated like SMPP ones (see gateway/receipts/provider_http.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from gateway.connectors import Health, Outcome, SendResult
from gateway.core import metrics
from gateway.core.config import ConnectorSettings
from gateway.core.model import Message
from gateway.core.template import render
from protocols.text import Part

TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


def dig(document: Any, path: str) -> Any:
    for key in path.split("."):
        if isinstance(document, dict):
            document = document.get(key)
        elif isinstance(document, list) and key.isdigit() and int(key) < len(document):
            document = document[int(key)]
        else:
            return None
    return document


class HttpConnector:
    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        self.name = name
        self.settings = settings
        self.health = Health(settings.failing_after)
        self.client: httpx.AsyncClient | None = None

    def start(self) -> None:
        s = self.settings
        self.client = httpx.AsyncClient(
            timeout=s.request_timeout,
            headers=s.headers,
            limits=httpx.Limits(max_connections=s.concurrency),
        )
        self.health.bound(True)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    def down_for(self) -> float:
        return self.health.down_for()

    async def wait_bound(self, timeout: float | None = None) -> bool:
        return self.client is not None

    def capacity(self) -> int:
        return self.settings.concurrency

    def binds_bound(self) -> int:
        return 0  # no sessions: requests on a pool

    def try_send(
        self, message: Message, part: Part, on_result: Callable[[SendResult], None]
    ) -> bool:
        return False  # every request is a coroutine: `send`

    def parts(self, message: Message) -> list[Part]:
        # One "part" standing for the whole message, numbered 0 so a receipt
        # for it settles every part the message was counted in.
        return [Part(b"", 0, 0, 0, message.parts, 0)]

    async def send(self, message: Message, part: Part) -> SendResult:
        assert self.client is not None and self.settings.url is not None
        body = render(
            self.settings.body,
            {"id": message.id, "to": message.to, "from": message.sender, "text": message.text,
             "parts": str(message.parts)},
        )
        started = time.perf_counter()
        try:
            response = await self.client.post(self.settings.url, json=body)
        except httpx.HTTPError as exc:
            result = SendResult(Outcome.TRANSIENT, error_code=f"transport: {exc!r}")
            self.health.record(result)
            return result
        metrics.SUBMIT_SM.labels(self.name, str(response.status_code)).inc()
        metrics.SUBMIT_LATENCY.labels(self.name).observe(time.perf_counter() - started)
        provider_id = None
        if response.is_success:
            try:
                provider_id = dig(response.json(), self.settings.id_path)
            except ValueError:
                provider_id = None
        if provider_id not in (None, ""):
            result = SendResult(Outcome.OK, provider_id=str(provider_id))
        elif response.status_code in TRANSIENT_HTTP:
            result = SendResult(Outcome.TRANSIENT, error_code=f"http_{response.status_code}",
                                throttled=response.status_code == 429)
        else:
            code = response.status_code if not response.is_success else "no_id"
            result = SendResult(Outcome.PERMANENT, error_code=f"http_{code}")
        self.health.record(result)
        return result
