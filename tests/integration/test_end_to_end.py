"""One message through the whole flow, as a user of the HTTP API sees it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from gateway.store.keys import msg_key
from loadtest.harness import GatewayProcess
from tests.integration.conftest import AUTH, SimProcess, submit, wait_final, wait_for
from tests.integration.receiver import Receiver


def test_message_is_delivered_with_smsc_id_in_history(
    gateway: GatewayProcess, client: httpx.Client
) -> None:
    r = client.post(
        "/v1/messages",
        json={"to": "+8613800138000", "from": "SHOP", "text": "Your order shipped",
              "client_ref": "o-1"},
    )
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status"] == "accepted"
    assert accepted["parts"] == 1
    assert accepted["encoding"] == "gsm7"

    body = wait_final(client, accepted["id"])
    assert body["status"] == "delivered"
    statuses = [h["status"] for h in body["history"]]
    assert statuses == ["accepted", "queued", "submitted", "delivered"]
    smsc_id = body["smsc_message_ids"]["1"]
    assert smsc_id
    assert smsc_id in body["history"][2]["detail"]
    assert body["connector"] == "sim"
    assert body["carrier"] == "China Mobile"
    assert body["client_ref"] == "o-1"
    times = [h["at"] for h in body["history"]]
    assert times == sorted(times)

    stats = wait_for(lambda: gateway.sim_stats()["receipts_acked"] >= 1 and gateway.sim_stats())
    assert stats["unique"] == 1
    assert stats["duplicates"] == 0

    metrics = client.get("/metrics").text
    assert 'smsgw_messages_total{status="delivered"} 1.0' in metrics


def test_the_smsc_s_own_id_is_shown_as_it_wrote_it_and_its_receipts_still_match(
    tmp_path: Path, receiver: Receiver
) -> None:
    """An SMSC that answers submit_sm with 0c2800000001 (a leading zero that
    receipt matching strips): GET, the history and the webhook bodies show
    0c2800000001, so the user finds it in the carrier's records, and the
    receipt, matched on the normalised id, still delivers the message."""
    sim = SimProcess(tmp_path, "--first-id", "0c2800000001").start()
    gw = GatewayProcess(tmp_path, sim_port=sim.port, env={"SMSGW_SIMULATOR__ENABLED": "false"})
    events = ["submitted", "delivered"]
    try:
        with gw, httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            one = submit(client, text="Your order shipped", callback_url=receiver.url,
                         callback_events=events)
            body = wait_final(client, one)
            assert body["status"] == "delivered"
            assert body["smsc_message_ids"] == {"1": "0c2800000001"}
            assert [(h["status"], h["detail"]) for h in body["history"]][2] == (
                "submitted", "sim 0c2800000001")

            # Two parts, sent one after the other: the ids in part order.
            two = submit(client, text="x" * 200, callback_url=receiver.url,
                         callback_events=events)
            body = wait_final(client, two)
            assert body["status"] == "delivered" and body["parts"] == 2
            assert body["smsc_message_ids"] == {"1": "0c2800000002", "2": "0c2800000003"}
            wait_for(lambda: receiver.statuses(one) == events
                     and receiver.statuses(two) == events)
    finally:
        sim.stop()
    hooks = {(e["id"], e["status"]): e["smsc_message_ids"] for e in receiver.taken()}
    assert hooks[one, "submitted"] == hooks[one, "delivered"] == {"1": "0c2800000001"}
    assert hooks[two, "delivered"] == {"1": "0c2800000002", "2": "0c2800000003"}
    # rendered when sent, so the submitted event may already show part 2 too
    assert hooks[two, "submitted"].items() <= hooks[two, "delivered"].items()
    assert hooks[two, "submitted"]["1"] == "0c2800000002"
    stats = sim.stats()  # as written when it stopped
    assert stats["receipts_acked"] == 3 and stats["duplicates"] == 0


def test_ucs2_message_of_201_characters_reaches_the_smsc_as_3_parts(
    gateway: GatewayProcess, client: httpx.Client
) -> None:
    text = "您好" * 100 + "!"
    r = client.post("/v1/messages", json={"to": "13800138001", "from": "10690000", "text": text})
    assert r.status_code == 202, r.text
    assert r.json()["parts"] == 3
    assert r.json()["encoding"] == "ucs2"
    body = wait_final(client, r.json()["id"])
    assert body["status"] == "delivered"
    assert sorted(body["smsc_message_ids"]) == ["1", "2", "3"]
    assert len(set(body["smsc_message_ids"].values())) == 3
    stats = wait_for(lambda: gateway.sim_stats()["submit_sm"] >= 3 and gateway.sim_stats())
    assert stats["unique"] == 3 and stats["duplicates"] == 0


def test_accepted_message_survives_a_gateway_restart_and_is_sent_once(tmp_path: Path) -> None:
    # First run: no SMSC to talk to, so the message can only wait in Redis.
    gw = GatewayProcess(tmp_path, env={"SMSGW_SIMULATOR__ENABLED": "false"})
    gw.start()
    try:
        r = httpx.post(
            f"{gw.base_url}/v1/messages", headers=AUTH,
            json={"to": "+8613800138002", "from": "SHOP", "text": "kept across restarts"},
        )
        assert r.status_code == 202, r.text
        message_id = r.json()["id"]
        status = httpx.get(f"{gw.base_url}/v1/messages/{message_id}", headers=AUTH).json()
        assert status["status"] == "queued"
    finally:
        assert gw.stop() == 0
    assert (tmp_path / "data" / "redis" / "appendonly.aof").exists()

    # Second run on the same data dir, the simulator back: delivered, once.
    gw2 = GatewayProcess(tmp_path, http_port=gw.http_port, sim_port=gw.sim_port)
    with gw2, httpx.Client(base_url=gw2.base_url, headers=AUTH, timeout=10) as client:
        body = wait_final(client, message_id)
        assert body["status"] == "delivered"
        stats = wait_for(lambda: gw2.sim_stats()["receipts_acked"] >= 1 and gw2.sim_stats())
        assert stats["submit_sm"] == 1
        assert stats["duplicates"] == 0


def test_bad_input_gets_problem_json(gateway: GatewayProcess, client: httpx.Client) -> None:
    good = {"to": "+8613800138000", "from": "SHOP", "text": "hi"}

    r = httpx.post(f"{gateway.base_url}/v1/messages", json=good,
                   headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "unauthorized"

    r = httpx.post(f"{gateway.base_url}/v1/messages", json=good)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"

    r = client.post("/v1/messages", json={**good, "to": "12345"})
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_number"
    assert r.json()["errors"][0]["field"] == "to"

    r = client.post(
        "/v1/messages", content=b'{"to": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["code"] == "malformed_json"

    r = client.post("/v1/messages", json={"from": "SHOP", "text": "hi", "class": "spam"})
    assert r.status_code == 422
    problem = r.json()
    assert problem["code"] == "validation_error"
    assert {e["field"] for e in problem["errors"]} == {"to", "class"}

    r = client.get("/v1/messages/does-not-exist")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    for response in (r,):
        assert "Traceback" not in response.text


def test_logs_are_json_with_ids_and_masked_numbers(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path, env={"SMSGW_LOG__LEVEL": "debug"})
    with gateway, httpx.Client(base_url=gateway.base_url, headers=AUTH, timeout=10) as client:
        _logged_message(gateway, client)


def _logged_message(gateway: GatewayProcess, client: httpx.Client) -> None:
    r = client.post("/v1/messages", json={"to": "+8613812348000", "from": "SHOP", "text": "hi"})
    message_id = r.json()["id"]
    wait_final(client, message_id)
    lines = [json.loads(line) for line in gateway.log_path.read_text().splitlines()
             if line.startswith("{")]
    accepted = [e for e in lines if e.get("event") == "accepted"]
    assert accepted and accepted[0]["message_id"] == message_id
    assert accepted[0]["to"] == "+86138****8000"
    assert "8613812348000" not in gateway.log_path.read_text()


def test_with_redis_url_set_the_gateway_uses_that_redis(tmp_path: Path, redis_url: str) -> None:
    """No embedded Redis when `redis.url` is configured: messages land in the
    operator's Redis (here the suite's own redis-server)."""
    gw = GatewayProcess(tmp_path, env={"SMSGW_REDIS__URL": redis_url})
    with gw, httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
        mid = client.post("/v1/messages", json={"to": "+8613800138009", "from": "SHOP",
                                                "text": "external redis"}).json()["id"]
        assert wait_final(client, mid)["status"] == "delivered"
    assert not (tmp_path / "data" / "redis").exists()
    import redis as redis_client

    r = redis_client.Redis.from_url(redis_url)
    try:
        assert r.hget(msg_key(mid), "s") == b"delivered"
    finally:
        r.close()


def _sample(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def test_metrics_of_two_workers_are_one_view_whichever_answers(tmp_path: Path) -> None:
    """With --workers 2 each scrape reaches one worker (SO_REUSEPORT); it shows
    both: the binds of both (one each) and every delivered message, whichever
    worker sent it."""
    gw = GatewayProcess(tmp_path, workers=2)
    gw.start()
    try:
        with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            r = client.post("/v1/messages/batch", json={
                "from": "SHOP", "text": "Sale {{n}}",
                "messages": [{"to": f"+86138{i:08d}", "vars": {"n": str(i)}}
                               for i in range(300)],
            })
            assert r.status_code == 202, r.text
            batch = r.json()["batch_id"]
            wait_for(lambda: client.get(f"/v1/batches/{batch}").json()["counts"]
                     .get("delivered") == 300)

        def scrape() -> str:
            with httpx.Client(base_url=gw.base_url, timeout=10) as fresh:  # a new connection
                return fresh.get("/metrics").text

        delivered = 'smsgw_messages_total{status="delivered"}'
        bound = 'smsgw_connector_bound{connector="sim"}'
        wait_for(lambda: _sample(scrape(), delivered) == 300 and _sample(scrape(), bound) == 2)
        for _ in range(12):
            text = scrape()
            assert _sample(text, delivered) == 300 and _sample(text, bound) == 2, text
    finally:
        gw.stop()


def test_records_are_deleted_after_retention(tmp_path: Path) -> None:
    """messages.retention: once validity (1 s here) and the receipt grace (0)
    are over, the record and its batch's counts live `retention` seconds more."""
    gw = GatewayProcess(tmp_path, env={"SMSGW_MESSAGES__RECEIPT_GRACE": "0",
                                       "SMSGW_MESSAGES__RETENTION": "2"})
    gw.start()
    try:
        with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            r = client.post("/v1/messages/batch", json={
                "from": "SHOP", "text": "Flash sale", "validity": 1,
                "messages": [{"to": "+8613800138000"}],
            })
            assert r.status_code == 202, r.text
            message_id, batch = r.json()["accepted"][0]["id"], r.json()["batch_id"]
            assert wait_final(client, message_id)["status"] == "delivered"
            wait_for(lambda: client.get(f"/v1/messages/{message_id}").status_code == 404)
            assert client.get(f"/v1/batches/{batch}").status_code == 404
    finally:
        gw.stop()
