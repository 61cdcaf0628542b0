"""Outbound connectors: how a part leaves the gateway, and what came back.

Every connector offers the same small surface to the dispatcher: `parts()` to
cut a message the way this carrier wants it, `send()` to hand one part over,
and health (`down_for()`) so traffic can fail over to the next connector.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

from gateway.core.config import ConnectorSettings


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
    """Down (no bind) or failing (N transient failures in a row) since when."""

    FAILING_AFTER = 20

    def __init__(self) -> None:
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
        healthy = self._bound and self._failures < self.FAILING_AFTER
        if healthy:
            self.unhealthy_since = None
        elif self.unhealthy_since is None:
            self.unhealthy_since = time.monotonic()

    def down_for(self) -> float:
        since = self.unhealthy_since
        return 0.0 if since is None else time.monotonic() - since


def make_connector(name: str, settings: ConnectorSettings, on_deliver):  # type: ignore[no-untyped-def]
    if settings.kind == "http":
        from gateway.connectors.http import HttpConnector

        return HttpConnector(name, settings)
    from gateway.connectors.smpp import SmppConnector

    return SmppConnector(name, settings, on_deliver)
