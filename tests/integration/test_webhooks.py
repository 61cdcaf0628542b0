"""Webhooks as a receiver sees them: signed, in status order per message, retried
after failures, kept across a gateway restart, MO routed by number. Real gateway
processes and a real HTTP receiver on loopback; retry delays shortened by config."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.connectors.smpp import SmppConnector
from gateway.core.config import Settings
from gateway.notify.webhooks import Webhooks, sign
from gateway.receipts.dlr import Receipts
from gateway.receipts.inbound import Inbound
from gateway.receipts.mo import MoRouter
from gateway.run.embedded_redis import free_port
from gateway.store import Store
from loadtest.harness import GatewayProcess
from protocols.smpp import CommandStatus, DeliverSm, Tag
from tests.integration.conftest import AUTH, SECRET, wait_final, wait_for
from tests.integration.receiver import Receiver

FAST_RETRIES = {
    "SMSGW_WEBHOOKS__RETRY_BASE": "0.05",
    "SMSGW_WEBHOOKS__RETRY_MAX": "0.3",
    "SMSGW_WEBHOOKS__POLL_INTERVAL": "0.05",
}
LIFECYCLE = ["accepted", "queued", "submitted", "delivered"]



def submit(gw: GatewayProcess, url: str, **extra: Any) -> str:
    r = httpx.post(f"{gw.base_url}/v1/messages", headers=AUTH, json={
        "to": "+8613800138000", "from": "SHOP", "text": "hi", "callback_url": url, **extra,
    })
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def batch(gw: GatewayProcess, n: int, **extra: Any) -> list[str]:
    r = httpx.post(f"{gw.base_url}/v1/messages/batch", headers=AUTH, timeout=30, json={
        "from": "SHOP", "text": "hi {{n}}", **extra,
        "messages": [{"to": f"+86138{i:08d}", "vars": {"n": i}} for i in range(n)],
    })
    assert r.status_code == 202, r.text
    return [a["id"] for a in r.json()["accepted"]]


def test_by_default_only_the_final_status_is_posted_signed_over_its_timestamp(
    tmp_path: Path, receiver: Receiver
) -> None:
    with GatewayProcess(tmp_path, env=FAST_RETRIES) as gw:
        mid = submit(gw, receiver.url, client_ref="ref-9")
        wait_for(lambda: receiver.statuses(mid) == ["delivered"])
        with httpx.Client(base_url=gw.base_url, headers=AUTH) as c:
            final = wait_final(c, mid)
        time.sleep(0.5)  # time for a callback too many to show
    assert receiver.bad_signatures == 0
    [request] = receiver.requests
    [body] = request["events"]
    headers = request["headers"]
    assert not request["batched"]
    assert body["id"] == mid and body["client_ref"] == "ref-9" and body["batch_id"] is None
    assert body["status"] == "delivered" and body["error_code"] is None
    assert body["event_id"] == f"{mid}.delivered" == headers["X-Smsgw-Event-Id"]
    assert body["parts"] == 1 and body["connector"] == "sim"
    assert body["carrier"] == "China Mobile"
    assert list(body["timestamps"]) == LIFECYCLE  # the whole history, up to this status
    assert len(final["history"]) == 4
    # The signature covers "<timestamp>.<body>": the same body under another
    # timestamp does not verify, so a recorded request cannot be replayed later.
    stamp = headers["X-Smsgw-Timestamp"]
    assert stamp.isdigit() and abs(int(stamp) - time.time()) < 300
    assert headers["X-Smsgw-Signature"] == sign(SECRET, stamp, request["raw"])
    assert headers["X-Smsgw-Signature"] != sign(SECRET, str(int(stamp) + 1), request["raw"])
    assert headers["Content-Type"] == "application/json"


def test_a_request_subscribes_to_every_status_and_gets_them_in_order(
    tmp_path: Path, receiver: Receiver
) -> None:
    with GatewayProcess(tmp_path, env=FAST_RETRIES) as gw:
        mid = submit(gw, receiver.url, callback_events=LIFECYCLE)
        wait_for(lambda: receiver.statuses(mid) == LIFECYCLE)
        r = httpx.post(f"{gw.base_url}/v1/messages", headers=AUTH, json={
            "to": "+8613800138000", "from": "SHOP", "text": "hi",
            "callback_events": ["delivered", "sent"],
        })
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("callback_events")
    assert receiver.requests[0]["events"][0]["connector"] is None  # not yet routed
    assert receiver.requests[-1]["events"][0]["connector"] == "sim"


def test_an_account_subscription_applies_to_its_batches_and_an_empty_one_to_none(
    tmp_path: Path, receiver: Receiver
) -> None:
    env = {**FAST_RETRIES, "SMSGW_ACCOUNTS__DEMO__CALLBACK_URL": receiver.url,
           "SMSGW_ACCOUNTS__DEMO__CALLBACK_EVENTS": '["submitted", "delivered"]'}
    with GatewayProcess(tmp_path, env=env) as gw:
        ids = batch(gw, 3)
        quiet = batch(gw, 2, callback_events=[])
        for mid in ids:
            wait_for(lambda m=mid: receiver.statuses(m) == ["submitted", "delivered"])
        with httpx.Client(base_url=gw.base_url, headers=AUTH) as c:
            for mid in quiet:
                wait_final(c, mid)
        time.sleep(0.5)
    assert {e["id"] for e in receiver.taken()} == set(ids)
    assert len({e["batch_id"] for e in receiver.taken()}) == 1


BATCHING = {**FAST_RETRIES, "SMSGW_ACCOUNTS__DEMO__CALLBACK_BATCH_SIZE": "500",
            "SMSGW_ACCOUNTS__DEMO__CALLBACK_CONCURRENCY": "1"}


def test_a_batching_receiver_gets_500_events_in_one_signed_post(
    tmp_path: Path, receiver: Receiver
) -> None:
    # One lane and a linger longer than the burst: the POST goes when the
    # 500th final fills the batch.
    env = {**BATCHING, "SMSGW_ACCOUNTS__DEMO__CALLBACK_BATCH_LINGER": "30"}
    with GatewayProcess(tmp_path, env=env) as gw:
        ids = batch(gw, 500, callback_url=receiver.url)
        wait_for(lambda: len(receiver.finals()) == 500, 60)
    [request] = receiver.requests
    assert request["batched"] and request["status"] == 200
    assert sorted(e["id"] for e in request["events"]) == sorted(ids)
    assert {e["status"] for e in request["events"]} == {"delivered"}
    headers = request["headers"]
    assert headers["X-Smsgw-Signature"] == sign(SECRET, headers["X-Smsgw-Timestamp"],
                                                request["raw"])
    assert "X-Smsgw-Event-Id" not in headers
    assert receiver.bad_signatures == 0


def test_a_failed_batch_is_sent_again_whole_then_the_rest_in_order_per_message(
    tmp_path: Path,
) -> None:
    receiver = Receiver(SECRET, lambda index, _events: 500 if index < 2 else 200).start()
    env = {**BATCHING, "SMSGW_ACCOUNTS__DEMO__CALLBACK_BATCH_SIZE": "20",
           "SMSGW_ACCOUNTS__DEMO__CALLBACK_BATCH_LINGER": "0.05"}
    try:
        with GatewayProcess(tmp_path, env=env) as gw:
            ids = batch(gw, 60, callback_url=receiver.url,
                        callback_events=["submitted", "delivered"])
            for mid in ids:
                wait_for(lambda m=mid: receiver.statuses(m) == ["submitted", "delivered"], 60)
            metrics = httpx.get(f"{gw.base_url}/metrics").text
    finally:
        receiver.stop()
    first, second, third = (r["events"] for r in receiver.requests[:3])
    assert [r["status"] for r in receiver.requests[:3]] == [500, 500, 200]
    # The same events again, oldest first (a retry may carry more behind them).
    assert second[: len(first)] == first and third[: len(first)] == first
    assert [r["headers"]["X-Smsgw-Attempt"] for r in receiver.requests[:3]] == ["1", "2", "3"]
    # Per message, in every request (failed ones too): submitted before delivered.
    for request in receiver.requests:
        order = [(e["id"], e["status"]) for e in request["events"]]
        for mid in {m for m, _ in order}:
            statuses = [st for m, st in order if m == mid]
            assert statuses in (["submitted"], ["delivered"], ["submitted", "delivered"])
    assert all(len(r["events"]) <= 20 for r in receiver.requests)
    assert 'smsgw_webhook_failures_total{reason="http_500"} 2.0' in metrics
def test_events_wait_in_redis_while_the_receiver_is_down_across_a_gateway_restart(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    gw = GatewayProcess(tmp_path, env=FAST_RETRIES)
    gw.start()
    try:
        ids = [submit(gw, url, callback_events=LIFECYCLE) for _ in range(5)]
        with httpx.Client(base_url=gw.base_url, headers=AUTH) as c:
            for mid in ids:
                assert wait_final(c, mid)["status"] == "delivered"

        def failures() -> float:
            text = httpx.get(f"{gw.base_url}/metrics").text
            return sum(float(v) for v in
                       re.findall(r"^smsgw_webhook_failures_total\{.*\} (\S+)$", text, re.M))

        wait_for(lambda: failures() >= 5)
    finally:
        gw.kill()  # kill -9: in-flight claims lapse, nothing is flushed by hand

    receiver = Receiver(SECRET, port=port).start()
    try:
        gw2 = GatewayProcess(tmp_path, env=FAST_RETRIES, http_port=gw.http_port,
                             sim_port=gw.sim_port)
        with gw2:
            for mid in ids:
                wait_for(lambda m=mid: receiver.statuses(m) == LIFECYCLE, timeout=60)
    finally:
        receiver.stop()
    assert receiver.bad_signatures == 0


def test_a_hanging_receiver_keeps_only_its_share_and_another_gets_everything(
    tmp_path: Path, receiver: Receiver
) -> None:
    # The hanging one answers after 5 s, past the 1 s timeout, on 8 lanes; the
    # worker has 4 requests: once it timed out it may hold 1 (slow_share).
    hanging = Receiver(SECRET, delay=5.0).start()
    env = {**FAST_RETRIES, "SMSGW_WEBHOOKS__CONCURRENCY": "4", "SMSGW_WEBHOOKS__TIMEOUT": "1",
           "SMSGW_WEBHOOKS__SLOW_SHARE": "1", "SMSGW_ACCOUNTS__DEMO__CALLBACK_CONCURRENCY": "8"}
    try:
        with GatewayProcess(tmp_path, env=env) as gw:
            stuck = batch(gw, 40, callback_url=hanging.url)
            wait_for(lambda: len(hanging.requests) >= 2)  # it holds its share now
            fast = batch(gw, 40, callback_url=receiver.url, callback_events=LIFECYCLE)
            wait_for(lambda: len(receiver.finals()) == len(fast), 60)
            # While the other took 160 events, the hanging one was asked at
            # most a few times per timeout.
            assert len(hanging.requests) < len(stuck)
    finally:
        hanging.stop()
    assert all(receiver.statuses(m) == LIFECYCLE for m in fast)


def _workers_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", "gateway.run.cli worker"],
                         capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def test_kill_9_of_a_worker_mid_batch_loses_no_event(tmp_path: Path) -> None:
    # The receiver answers after 2 s; the worker sending a batch is killed while
    # it waits. Its lease (2 × timeout + 5 s) lapses and the batch goes again.
    receiver = Receiver(SECRET, delay=2.0).start()
    env = {**BATCHING, "SMSGW_ACCOUNTS__DEMO__CALLBACK_BATCH_SIZE": "50",
           "SMSGW_WEBHOOKS__TIMEOUT": "3"}
    try:
        gw = GatewayProcess(tmp_path, env=env, workers=2)
        with gw:
            assert gw.process is not None
            wait_for(lambda: len(_workers_of(gw.process.pid)) == 2, 20)
            ids = batch(gw, 200, callback_url=receiver.url)
            wait_for(lambda: any(r["status"] is None for r in receiver.requests))
            in_flight = {e["event_id"] for r in receiver.requests if r["status"] is None
                         for e in r["events"]}
            # One of the two holds the batch; kill both, so it surely dies.
            for pid in _workers_of(gw.process.pid):
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: len(receiver.finals()) == len(ids), 90)
    finally:
        receiver.stop()
    again = [e["event_id"] for r in receiver.requests[1:] for e in r["events"]]
    assert in_flight and in_flight <= set(again)  # the killed batch was sent again
    assert set(receiver.finals()) == set(ids)


# --- MO ----------------------------------------------------------------------


def _settings(mo_url: str) -> Settings:
    return Settings.model_validate({
        "accounts": {
            "shop": {"api_keys": ["k1"], "callback_secret": SECRET, "mo_url": mo_url,
                     "callback_allow": ["127.0.0.1"],
                     "mo_numbers": ["+10690001", "10690002"]},
            "other": {"api_keys": ["k2"], "callback_secret": "x", "mo_url": mo_url,
                      "callback_allow": ["127.0.0.1"],
                      "mo_numbers": ["10690009"]},
        },
        "connectors": {"sim": {"port": 1, "system_id": "x"}},
        "routes": [{"connectors": ["sim"]}],
        "webhooks": {"retry_base": 0.05, "retry_max": 0.2, "poll_interval": 0.02},
    })


class _Binds:
    """deliver_sm as the SMPP connector takes them off its binds: translated
    into Mo / Receipt events and handed to gateway/receipts/."""

    def __init__(self, connector: SmppConnector) -> None:
        self.connector = connector

    async def on_deliver(self, _connector: str, pdus: list[DeliverSm]) -> list[int]:
        return await self.connector._handle(pdus)


def _mo_wiring(store: Store, receiver: Receiver) -> tuple[Settings, Webhooks, MoRouter, _Binds]:
    settings = _settings(receiver.url)
    webhooks = Webhooks(settings.webhooks, settings.accounts, store, "test")
    mo = MoRouter(settings.webhooks, settings.accounts, store, webhooks)
    inbound = Inbound(Receipts(store, settings.connectors, settings.retry), mo)
    return settings, webhooks, mo, _Binds(SmppConnector("sim", settings.connectors["sim"],
                                                        inbound))


async def _mo_requests(webhooks: Webhooks, receiver: Receiver,
                       count: int) -> list[dict[str, Any]]:
    """Run the webhook sender until `count` requests came (bounded: 10 s), and a
    moment more, so that one too many would show."""
    task = asyncio.create_task(webhooks.run())
    try:
        for _ in range(200):
            if len(receiver.requests) >= count:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
    finally:
        webhooks.stop()
        await task
    return receiver.requests


async def test_mo_messages_go_to_the_account_that_owns_the_number(
    store: Store, receiver: Receiver
) -> None:
    _, webhooks, _, receipts = _mo_wiring(store, receiver)
    mo = DeliverSm(source_addr_ton=1, source_addr="8613800138000",
                   destination_addr="10690002", data_coding=8,
                   short_message="退订".encode("utf-16-be"))
    assert await receipts.on_deliver("sim", [mo]) == [CommandStatus.ESME_ROK]
    stray = DeliverSm(source_addr="1", destination_addr="5555", short_message=b"who?")
    assert await receipts.on_deliver("sim", [stray]) == [CommandStatus.ESME_ROK]

    [request] = await _mo_requests(webhooks, receiver, 1)
    [body] = request["events"]
    assert body["type"] == "mo" and body["text"] == "退订"
    assert body["from"] == "+8613800138000" and body["to"] == "10690002"
    assert body["connector"] == "sim"
    headers = request["headers"]
    assert headers["X-Smsgw-Signature"] == sign(SECRET, headers["X-Smsgw-Timestamp"],
                                                request["raw"])
    assert receiver.bad_signatures == 0


def _udh_part(ref: int, total: int, seq: int, text: str,
              source: str = "8613800138000") -> DeliverSm:
    return DeliverSm(source_addr_ton=1, source_addr=source,
                     destination_addr="10690002", esm_class=0x40, data_coding=8,
                     short_message=bytes((5, 0, 3, ref, total, seq)) + text.encode("utf-16-be"))


async def test_a_concatenated_mo_goes_out_once_whole_whatever_order_and_copies(
    store: Store, receiver: Receiver
) -> None:
    """Parts arrive out of order, one twice, one across two calls (as on two
    binds): one webhook with the whole text; a SAR message likewise."""
    _, webhooks, _, receipts = _mo_wiring(store, receiver)
    # "请回复TD退订😀" with the emoji's surrogate pair cut between parts 2 and 3
    units = "请回复TD退订😀".encode("utf-16-be")
    cut = [units[0:6], units[6:14], units[14:18]]
    texts = [c.decode("utf-16-be", "surrogatepass") for c in cut]
    assert await receipts.on_deliver("sim", [_udh_part(7, 3, 3, texts[2]),
                                             _udh_part(7, 3, 1, texts[0])]) == [0, 0]
    assert await receipts.on_deliver("sim", [_udh_part(7, 3, 1, texts[0])]) == [0]
    assert await receipts.on_deliver("sim", [_udh_part(7, 3, 2, texts[1])]) == [0]
    assert await receipts.on_deliver("sim", [_udh_part(7, 3, 2, texts[1])]) == [0]  # resent
    sar = []
    for seq, text in ((2, "world"), (1, "hello ")):
        pdu = DeliverSm(source_addr="8613900139000", destination_addr="10690002",
                        short_message=text.encode())
        for tag, value in ((Tag.SAR_MSG_REF_NUM, 300), (Tag.SAR_TOTAL_SEGMENTS, 2),
                           (Tag.SAR_SEGMENT_SEQNUM, seq)):
            pdu.set(tag, value)
        sar.append(pdu)
    assert await receipts.on_deliver("sim", sar) == [0, 0]
    bodies = [r["events"][0] for r in await _mo_requests(webhooks, receiver, 2)]
    assert sorted((b["text"], b["parts"], b.get("complete", True)) for b in bodies) == [
        ("hello world", 2, True), ("请回复TD退订😀", 3, True)]
    assert await store.mo_overdue(time.time() + 3600) == []  # nothing left behind


async def test_a_concatenated_mo_missing_parts_goes_with_what_came_after_the_timeout(
    store: Store, receiver: Receiver
) -> None:
    settings, webhooks, mo, receipts = _mo_wiring(store, receiver)
    # (an alphanumeric source may hold any character)
    await receipts.on_deliver("sim", [_udh_part(9, 3, 1, "abc", "A|B"),
                                      _udh_part(9, 3, 3, "ghi", "A|B")])
    assert await mo.give_up_overdue() == 0  # not yet due
    later = time.time() + settings.webhooks.mo_combine_timeout + 1
    assert await mo.give_up_overdue(later) == 1
    assert await mo.give_up_overdue(later) == 0  # once
    await receipts.on_deliver("sim", [_udh_part(9, 3, 2, "def", "A|B")])  # too late: dropped
    assert await mo.give_up_overdue(later + 3600) == 0
    [body] = [r["events"][0] for r in await _mo_requests(webhooks, receiver, 1)]
    assert (body["text"], body["parts"], body["complete"]) == ("abcghi", 3, False)
    assert body["from"] == "A|B"
