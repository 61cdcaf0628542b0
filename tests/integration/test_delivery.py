"""Delivery as an operator sees it: failover and return, expiry, HTTP providers,
dead letters. Real gateway, redis-server and simulator processes on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.run.embedded_redis import free_port
from loadtest.harness import GatewayProcess
from tests.integration.conftest import AUTH, SimProcess, submit, wait_final, wait_for, write_config


def smpp_connector(name: str, port: int, **extra: Any) -> str:
    lines = [f"[connectors.{name}]", 'kind = "smpp"', f"port = {port}",
             'system_id = "smsgw"', 'password = "secret"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines)


def test_down_primary_hands_traffic_to_fallback_and_traffic_returns(tmp_path: Path) -> None:
    primary_port = free_port()  # nothing listens here yet: the primary carrier is down
    backup = SimProcess(tmp_path).start()
    config = write_config(
        tmp_path,
        smpp_connector("primary", primary_port, failover_after=1.0)
        + "\n" + smpp_connector("backup", backup.port),
        '[[routes]]\nconnectors = ["primary", "backup"]',
    )
    gw = GatewayProcess(tmp_path, config=config)
    primary: SimProcess | None = None
    try:
        gw.start()
        with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            first = [submit(client, text=f"while primary is down {i}") for i in range(5)]
            for mid in first:
                body = wait_final(client, mid)
                assert body["status"] == "delivered"
                assert body["connector"] == "backup"
                assert any("failover primary -> backup" in h["detail"] for h in body["history"])
            wait_for(lambda: backup.stats()["unique"] == 5, 10)

            primary = SimProcess(tmp_path, port=primary_port).start()
            wait_for(lambda: primary.stats()["binds"] >= 1, 30)
            later = [submit(client, text=f"primary is back {i}") for i in range(5)]
            for mid in later:
                body = wait_final(client, mid)
                assert body["status"] == "delivered" and body["connector"] == "primary"
        wait_for(lambda: primary.stats()["unique"] == 5, 10)
        assert backup.stats()["duplicates"] == 0 and primary.stats()["duplicates"] == 0
    finally:
        gw.stop()
        backup.stop()
        if primary is not None:
            primary.stop()


def test_no_receipt_by_the_end_of_validity_means_expired(tmp_path: Path) -> None:
    sim = SimProcess(tmp_path, "--receipt-delay", "3600").start()
    config = write_config(
        tmp_path, smpp_connector("slow", sim.port), '[[routes]]\nconnectors = ["slow"]',
        "[messages]\nreceipt_grace = 0\n",
    )
    try:
        with GatewayProcess(tmp_path, config=config) as gw, \
                httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            mid = submit(client, validity=2)
            body = wait_final(client, mid, timeout=20)
            assert body["status"] == "expired"
            assert [h["status"] for h in body["history"]][-2:] == ["submitted", "expired"]
    finally:
        sim.stop()


def test_messages_wait_for_a_down_connector_until_validity_ends(tmp_path: Path) -> None:
    """A connector that is down keeps its queue: nothing is failed or dropped early."""
    port = free_port()
    config = write_config(
        tmp_path, smpp_connector("only", port, failover_after=0.5),
        '[[routes]]\nconnectors = ["only"]', "[messages]\nreceipt_grace = 0\n",
    )
    with GatewayProcess(tmp_path, config=config) as gw, \
            httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
        short = submit(client, text="short validity", validity=2)
        long = submit(client, text="long validity", validity=3600)
        assert wait_final(client, short, timeout=20)["status"] == "expired"
        # The long one is still waiting, not dropped; it goes out once the SMSC is up.
        assert client.get(f"/v1/messages/{long}").json()["status"] == "queued"
        sim = SimProcess(tmp_path, port=port).start()
        try:
            body = wait_final(client, long, timeout=40)
            assert body["status"] == "delivered"
            wait_for(lambda: sim.stats()["unique"] == 1, 10)
        finally:
            sim.stop()


class Provider:
    """A local HTTP SMS provider: answers with a configurable status, records requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                provider.requests.append(body)
                answer = json.dumps({"data": {"sid": f"P{len(provider.requests)}"}}).encode()
                self.send_response(provider.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.close()


def http_connector(url: str) -> str:
    return f"""
[connectors.prov]
kind = "http"
url = "{url}"
body = {{ destination = "{{{{to}}}}", message = "{{{{text}}}}", ref = "{{{{id}}}}" }}
id_path = "data.sid"
receipt_token = "rt"
receipt_id_path = "sid"
receipt_status_path = "state"
"""


def test_http_provider_connector_and_its_receipts(tmp_path: Path, provider: Provider) -> None:
    config = write_config(
        tmp_path, http_connector(provider.url), '[[routes]]\nconnectors = ["prov"]'
    )
    with GatewayProcess(tmp_path, config=config) as gw, \
            httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
        mid = submit(client, text="x" * 200)  # 2 parts by SMPP rules; one request here
        wait_for(lambda: provider.requests, 20)
        assert provider.requests[0] == {"destination": "+8613800138000", "message": "x" * 200,
                                        "ref": mid}
        wait_for(lambda: client.get(f"/v1/messages/{mid}").json()["status"] == "submitted", 20)

        # The provider answered "P1" and reports "p1": matched after normalising
        # both, while the message keeps the provider's own "P1".
        report = {"sid": "p1", "state": "delivered"}
        bad = httpx.post(f"{gw.base_url}/v1/receipts/prov", json=report,
                         headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401 and bad.json()["code"] == "unauthorized"
        assert bad.headers["content-type"] == "application/problem+json"
        unknown = httpx.post(f"{gw.base_url}/v1/receipts/nope", json=report,
                             headers={"Authorization": "Bearer rt"})
        assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
        empty = httpx.post(f"{gw.base_url}/v1/receipts/prov", json={"state": "delivered"},
                           headers={"Authorization": "Bearer rt"})
        assert empty.status_code == 422 and empty.json()["code"] == "invalid_receipt"
        ok = httpx.post(f"{gw.base_url}/v1/receipts/prov", json=report,
                        headers={"Authorization": "Bearer rt"})
        assert ok.status_code == 204
        body = wait_final(client, mid)
        assert body["status"] == "delivered" and body["parts"] == 2
        assert body["smsc_message_ids"] == {"0": "P1"}


def test_exhausted_retries_dead_letter_then_replay(tmp_path: Path, provider: Provider) -> None:
    provider.status = 503  # the provider is overloaded: every attempt is transient
    config = write_config(
        tmp_path, http_connector(provider.url), '[[routes]]\nconnectors = ["prov"]',
        "[retry]\nmax_attempts = 2\nbase_delay = 0.01\n",
    )
    with GatewayProcess(tmp_path, config=config) as gw, \
            httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
        mid = submit(client)
        body = wait_final(client, mid)
        assert body["status"] == "failed"
        assert body["error_code"].startswith("retries_exhausted")
        assert len(provider.requests) == 2

        cli = [sys.executable, "-m", "gateway.run.cli", "dlq"]
        env_cmd = {"env": {**__import__("os").environ, "SMSGW_DATA_DIR": str(tmp_path / "data")}}
        listed = subprocess.run([*cli, "-c", str(config), "list"], capture_output=True, text=True,
                                check=True, **env_cmd)
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [r["m"] for r in rows] == [mid]

        provider.status = 200
        replayed = subprocess.run([*cli, "-c", str(config), "replay", mid], capture_output=True,
                                  text=True, check=True, **env_cmd)
        new_id = json.loads(replayed.stdout)["new_id"]
        assert wait_for(lambda: client.get(f"/v1/messages/{new_id}").json()["status"]
                        == "submitted", 20)
        # The original keeps its final status; the dead-letter queue is empty again.
        assert client.get(f"/v1/messages/{mid}").json()["status"] == "failed"
        listed = subprocess.run([*cli, "-c", str(config), "list"], capture_output=True, text=True,
                                check=True, **env_cmd)
        assert listed.stdout.strip() == ""


def test_no_matching_route_is_rejected_with_no_route(tmp_path: Path) -> None:
    sim = SimProcess(tmp_path).start()
    config = write_config(
        tmp_path, smpp_connector("otp_only", sim.port),
        '[[routes]]\nclass = "otp"\nprefix = "86"\nconnectors = ["otp_only"]',
    )
    try:
        with GatewayProcess(tmp_path, config=config) as gw, \
                httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            r = client.post("/v1/messages", json={"to": "+8613800138000", "from": "SHOP",
                                                  "text": "sale!", "class": "marketing"})
            assert r.status_code == 422 and r.json()["code"] == "no_route"
            r = client.post("/v1/messages", json={"to": "+447911123456", "from": "SHOP",
                                                  "text": "123456", "class": "otp"})
            assert r.status_code == 422 and r.json()["code"] == "no_route"
            mid = submit(client, text="123456", **{"class": "otp"})
            assert wait_final(client, mid)["status"] == "delivered"
    finally:
        sim.stop()


def test_send_at_in_the_future_is_scheduled_then_sent_when_due(tmp_path: Path) -> None:
    import datetime as dt

    with GatewayProcess(tmp_path) as gw, \
            httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
        due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
        mid = submit(client, text="later", send_at=due.isoformat())
        assert client.get(f"/v1/messages/{mid}").json()["status"] == "scheduled"
        body = wait_final(client, mid)
        statuses = [h["status"] for h in body["history"]]
        assert statuses == ["accepted", "scheduled", "queued", "submitted", "delivered"]
        submitted_at = dt.datetime.fromisoformat(body["history"][3]["at"])
        assert submitted_at >= due


def test_a_connector_that_keeps_failing_hands_traffic_to_the_fallback(tmp_path: Path) -> None:
    # Bound, but answering every submit_sm with ESME_RSYSERR (transient).
    failing = SimProcess(tmp_path, "--error-rate", "0x08:1.0").start()
    backup = SimProcess(tmp_path).start()
    config = write_config(
        tmp_path,
        smpp_connector("failing", failing.port, failover_after=1.0)
        + "\n" + smpp_connector("backup", backup.port),
        '[[routes]]\nconnectors = ["failing", "backup"]',
        "[retry]\nmax_attempts = 100\nbase_delay = 0.02\nmax_delay = 0.2\n",
    )
    try:
        with GatewayProcess(tmp_path, config=config) as gw, \
                httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            ids = [submit(client, to=f"+86138{i:08d}", text=f"failing {i}") for i in range(5)]
            for mid in ids:
                body = wait_final(client, mid)
                assert body["status"] == "delivered" and body["connector"] == "backup"
        wait_for(lambda: backup.stats()["unique"] == 5, 10)
        assert failing.stats()["acks"].get("0x00000008", 0) >= 20
    finally:
        failing.stop()
        backup.stop()


def test_status_command_reports_connectors_and_queues(tmp_path: Path) -> None:
    import os

    with GatewayProcess(tmp_path) as gw, \
            httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
        assert wait_final(client, submit(client))["status"] == "delivered"
        env = {**os.environ, "SMSGW_DATA_DIR": str(tmp_path / "data")}

        def report() -> dict[str, Any]:
            out = subprocess.run([sys.executable, "-m", "gateway.run.cli", "status"], env=env,
                                 capture_output=True, text=True, check=True).stdout
            return dict(json.loads(out))

        def bound() -> dict[str, Any] | None:
            r = report()
            workers = list(r["connectors"].get("sim", {}).values())
            return r if workers and workers[0]["up"] and workers[0]["binds_bound"] == 1 else None

        # Workers publish their view every 2 s; the first may predate the bind.
        status = wait_for(bound, 15, interval=0.5)
        assert status["lanes"] == {"sim:otp": 0, "sim:transactional": 0, "sim:marketing": 0}
        assert status["dead_letters"] == 0
        assert status["webhooks"] == {"queues": 0, "dead": 0}
        assert len(status["connectors"]["sim"]) == 1  # one worker


def test_a_fallback_that_would_cut_other_parts_fails_the_message_and_sends_nothing(
        tmp_path: Path) -> None:
    """Admission counts the parts with the route's first connector (UDH: 153
    GSM characters a part); a fallback with SAR TLVs (160 a part) would cut a
    310-character text into 2, not the 3 stored: the message fails with
    parts_mismatch and the fallback's SMSC sees none of it. A text both cut
    alike (200 characters: 2 parts either way) goes through the fallback."""
    backup = SimProcess(tmp_path).start()
    config = write_config(
        tmp_path,
        smpp_connector("primary", free_port(), failover_after=0.5)
        + "\n" + smpp_connector("backup", backup.port, concat="sar"),
        '[[routes]]\nconnectors = ["primary", "backup"]',
    )
    try:
        with GatewayProcess(tmp_path, config=config) as gw, \
                httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            mismatched = submit(client, text="a" * 310)
            body = wait_final(client, mismatched)
            assert body["status"] == "failed" and body["parts"] == 3
            assert body["error_code"] == "parts_mismatch"
            assert "backup cuts 2 parts, admission counted 3" in body["history"][-1]["detail"]
            alike = submit(client, text="b" * 200)
            body = wait_final(client, alike)
            assert body["status"] == "delivered" and body["connector"] == "backup"
            assert body["parts"] == 2 and len(body["smsc_message_ids"]) == 2
        # The simulator writes its stats now and then: wait for them to show.
        wait_for(lambda: backup.stats()["unique"] >= 2, 10)
        assert backup.stats()["unique"] == 2  # the two parts of the second message only
    finally:
        backup.stop()
