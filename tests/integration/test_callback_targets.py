"""Callback targets a tenant may not point the gateway at (SSRF): loopback,
private, link-local and metadata addresses are refused at submit when written
as literals, and on the address DNS gives when the callback is sent, unless
the account's `callback_allow` opens them. Real gateway processes, a real
receiver on loopback, the system resolver."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.core.targets import RefusedTarget, TargetPolicy, refused_address
from loadtest.harness import GatewayProcess
from tests.integration.conftest import AUTH, wait_final, wait_for
from tests.integration.receiver import Receiver

FAST = {
    "SMSGW_WEBHOOKS__RETRY_BASE": "0.05",
    "SMSGW_WEBHOOKS__RETRY_MAX": "0.2",
    "SMSGW_WEBHOOKS__POLL_INTERVAL": "0.05",
}
NO_ALLOW = {**FAST, "SMSGW_ACCOUNTS__DEMO__CALLBACK_ALLOW": "[]"}
REFUSED = [
    "http://127.0.0.1:16380/", "http://[::1]/cb", "http://10.1.2.3/cb", "https://192.168.0.1/",
    "http://172.16.5.5/", "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/",
    "http://[fd00:ec2::254]/", "http://[fc00::1]/", "http://0.0.0.0:8080/", "http://224.0.0.1/",
    "http://[::ffff:127.0.0.1]/",
]
ONE = {"to": "+8613800138000", "from": "SHOP", "text": "hi"}



def _batch(url: str) -> dict[str, Any]:
    return {"from": "SHOP", "text": "hi", "callback_url": url,
            "messages": [{"to": "+8613800138000"}, {"to": "+8613800138001"}]}


def test_literal_loopback_private_and_metadata_targets_get_422_on_both_endpoints(
    tmp_path: Path,
) -> None:
    with GatewayProcess(tmp_path, env=NO_ALLOW) as gw, \
            httpx.Client(base_url=gw.base_url, headers=AUTH) as c:
        for url in REFUSED:
            for path, body in (("/v1/messages", {**ONE, "callback_url": url}),
                               ("/v1/messages/batch", _batch(url))):
                r = c.post(path, json=body)
                assert r.status_code == 422, (path, url, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["code"] == "invalid_callback_url", (path, url, r.text)
                assert r.json()["errors"][0]["field"] == "callback_url"
        # A public address and a host name pass submit (the name is checked on send).
        for url in ("https://93.184.216.34/cb", "https://hooks.example.com/cb"):
            assert c.post("/v1/messages", json={**ONE, "callback_url": url}).status_code == 202


def test_the_account_allowlist_lets_a_loopback_receiver_have_its_callbacks(
    tmp_path: Path, receiver: Receiver
) -> None:
    env = {**FAST, "SMSGW_ACCOUNTS__DEMO__CALLBACK_ALLOW": '["127.0.0.1/32"]'}
    with GatewayProcess(tmp_path, env=env) as gw, \
            httpx.Client(base_url=gw.base_url, headers=AUTH) as c:
        r = c.post("/v1/messages", json={**ONE, "callback_url": receiver.url})
        assert r.status_code == 202, r.text
        mid = r.json()["id"]
        wait_for(lambda: receiver.statuses(mid) == ["delivered"])
        # Only the listed network: the rest of loopback stays refused.
        r = c.post("/v1/messages", json={**ONE, "callback_url": "http://127.0.0.2/"})
        assert r.status_code == 422 and r.json()["code"] == "invalid_callback_url"


def test_a_host_name_resolving_to_loopback_is_refused_when_sent_and_not_retried(
    tmp_path: Path, receiver: Receiver
) -> None:
    # `localhost` passes submit (a name, not an address); when the callback is
    # sent it resolves to loopback, which this account does not allow: the
    # event is dead-lettered at once with its reason, the receiver sees nothing.
    url = receiver.url.replace("127.0.0.1", "localhost")
    with GatewayProcess(tmp_path, env=NO_ALLOW) as gw, \
            httpx.Client(base_url=gw.base_url, headers=AUTH) as c:
        r = c.post("/v1/messages", json={**ONE, "callback_url": url})
        assert r.status_code == 202, r.text
        wait_final(c, r.json()["id"])
        wait_for(lambda: "webhook_target_refused" in gw.log_path.read_text())
        wait_for(lambda: "webhook_dead" in gw.log_path.read_text())
        time.sleep(1.0)  # many retry periods at these settings: none may come
        metrics = c.get("/metrics").text
    log = gw.log_path.read_text()
    assert receiver.requests == []
    assert log.count("webhook_target_refused") == 1, log[-3000:]
    assert "resolves only to refused addresses" in log
    assert "webhook_retry" not in log
    assert 'smsgw_webhook_failures_total{reason="refused_target"} 1.0' in metrics


def test_the_resolved_addresses_lose_refused_answers_and_keep_allowed_ones() -> None:
    found = ["127.0.0.1", "93.184.216.34", "10.0.0.7"]
    assert TargetPolicy().allowed_addresses("example.com", found) == ["93.184.216.34"]
    with pytest.raises(RefusedTarget):
        TargetPolicy().allowed_addresses("localhost", ["127.0.0.1", "::1"])
    assert TargetPolicy(["localhost"]).allowed_addresses("localhost", ["127.0.0.1"]) == [
        "127.0.0.1"]
    assert TargetPolicy(["127.0.0.0/8"]).allowed_addresses("localhost", ["127.0.0.1", "::1"]) \
        == ["127.0.0.1"]
    assert TargetPolicy().allowed_addresses("h", ["fe80::1%eth0", "2606:4700::1"]) == [
        "2606:4700::1"]
    assert refused_address(ipaddress.ip_address("8.8.8.8")) is None
    assert refused_address(ipaddress.ip_address("169.254.169.254")) is not None
