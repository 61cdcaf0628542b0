"""Outbound connectors: how a part leaves the gateway, and what came back.

Every connector (SMPP and HTTP now, CMPP next) implements `Connector`, the one
surface the dispatcher and the worker use: `parts()` to cut a message the way
this carrier wants it, `send()` / `try_send()` to hand one part over, health
(`down_for()`, `wait_bound()`) so traffic can fail over to the next connector,
and `capacity()` / `binds_bound()` for the dispatcher's in-flight limit and the
status view. Nothing outside a connector's own module asks for more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from gateway.core.config import ConnectorSettings
from gateway.core.events import Inbound
from gateway.core.model import Message
from protocols.text import Part


class Outcome(Enum):
    OK = "ok"
    TRANSIENT = "transient"  # try again later: busy, throttled, timed out, bind lost
    PERMANENT = "permanent"  # the carrier refuses this message; do not retry


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    provider_id: str = ""
    error_code: str = ""
    # The carrier asked us to slow down (ESME_RTHROTTLED, HTTP 429).
    throttled: bool = False


class Health:
    """Down (no bind) or failing (`failing_after` transient failures in a
    row, a connector setting) since when."""

    def __init__(self, failing_after: int) -> None:
        self.failing_after = failing_after
        self.unhealthy_since: float | None = time.monotonic()
        self._failures = 0
        self._bound = False

    def bound(self, yes: bool) -> None:
        self._bound = yes
        self._update()

    def record(self, result: SendResult) -> None:
        if result.outcome is Outcome.TRANSIENT and not result.throttled:
            self._failures += 1
        else:
            self._failures = 0
        self._update()

    def _update(self) -> None:
        healthy = self._bound and self._failures < self.failing_after
        if healthy:
            self.unhealthy_since = None
        elif self.unhealthy_since is None:
            self.unhealthy_since = time.monotonic()

    def down_for(self) -> float:
        since = self.unhealthy_since
        return 0.0 if since is None else time.monotonic() - since


class Connector(Protocol):
    """What the dispatcher and the worker may use of a connector.

    `parts()` cuts a message into what `send()` takes; each part's `seq` and
    `total` are all the dispatcher reads of it, and `total` must equal the
    `Message.parts` admission stored (the dispatcher fails the message with
    `parts_mismatch` otherwise). `try_send()` is the callback fast path: it
    sends now and returns True, or sends nothing and returns False (always
    False for a connector without one), and then `send()` is used.
    """

    name: str
    settings: ConnectorSettings

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def down_for(self) -> float:
        """Seconds down (unbound) or failing; 0 when healthy."""
        ...

    async def wait_bound(self, timeout: float | None = None) -> bool: ...

    def capacity(self) -> int:
        """Parts that may be in flight at once (the dispatcher's limit)."""
        ...

    def binds_bound(self) -> int:
        """Sessions that can send right now (for `smsgw status`)."""
        ...

    def parts(self, message: Message) -> list[Part]: ...

    async def send(self, message: Message, part: Part) -> SendResult: ...

    def try_send(
        self, message: Message, part: Part, on_result: Callable[[SendResult], None]
    ) -> bool: ...


def make_connector(name: str, settings: ConnectorSettings, inbound: Inbound) -> Connector:
    """`inbound` takes the receipts and MO a connector receives on its own
    sessions (an HTTP provider's come through gateway/receipts/provider_http.py)."""
    if settings.kind == "http":
        from gateway.connectors.http import HttpConnector

        return HttpConnector(name, settings)
    from gateway.connectors.smpp import SmppConnector

    return SmppConnector(name, settings, inbound)
