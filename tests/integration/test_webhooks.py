"""Webhooks as a receiver sees them: signed, in status order per message, retried
after failures, kept across a gateway restart, MO routed by number. Real gateway
processes and a real HTTP receiver on loopback; retry delays shortened by config."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import Settings
from gateway.embedded_redis import free_port
from gateway.receipts import Receipts
from gateway.store import Store
from gateway.webhooks import Webhooks, sign
from loadtest.harness import GatewayProcess
from protocols.smpp import CommandStatus, DeliverSm, Tag
from tests.integration.conftest import AUTH, wait_final, wait_for
from tests.integration.receiver import Receiver

SECRET = "demo-secret"  # the default config's callback_secret for account demo
FAST_RETRIES = {
    "SMSGW_WEBHOOKS__RETRY_BASE": "0.05",
    "SMSGW_WEBHOOKS__RETRY_MAX": "0.3",
    "SMSGW_WEBHOOKS__POLL_INTERVAL": "0.05",
}
LIFECYCLE = ["accepted", "queued", "submitted", "delivered"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET).start()
    try:
        yield r
    finally:
        r.stop()


def submit(gw: GatewayProcess, url: str, **extra: Any) -> str:
    r = httpx.post(f"{gw.base_url}/v1/messages", headers=AUTH, json={
        "to": "+8613800138000", "from": "SHOP", "text": "hi", "callback_url": url, **extra,
    })
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def test_each_status_change_is_posted_signed_and_in_order(
    tmp_path: Path, receiver: Receiver
) -> None:
    with GatewayProcess(tmp_path, env=FAST_RETRIES) as gw:
        mid = submit(gw, receiver.url, client_ref="ref-9")
        wait_for(lambda: receiver.statuses(mid) == LIFECYCLE)
        with httpx.Client(base_url=gw.base_url, headers=AUTH) as c:
            final = wait_final(c, mid)
    assert receiver.bad_signatures == 0
    last = receiver.requests[-1]
    body, headers = last["body"], last["headers"]
    assert body["id"] == mid and body["client_ref"] == "ref-9" and body["batch_id"] is None
    assert body["status"] == "delivered" and body["error_code"] is None
    assert body["parts"] == 1 and body["connector"] == "sim"
    assert body["carrier"] == "China Mobile"
    assert list(body["timestamps"]) == LIFECYCLE
    assert len(final["history"]) == 4
    assert headers["X-Smsgw-Signature"].startswith("sha256=")
    assert headers["X-Smsgw-Timestamp"].isdigit()
    assert headers["Content-Type"] == "application/json"
    assert receiver.requests[0]["body"]["connector"] is None  # not yet routed to the SMSC


def test_a_batch_uses_the_account_default_callback_and_carries_the_batch_id(
    tmp_path: Path, receiver: Receiver
) -> None:
    env = {**FAST_RETRIES, "SMSGW_ACCOUNTS__DEMO__CALLBACK_URL": receiver.url}
    with GatewayProcess(tmp_path, env=env) as gw:
        r = httpx.post(f"{gw.base_url}/v1/messages/batch", headers=AUTH, json={
            "from": "SHOP", "text": "hi {{n}}",
            "messages": [{"to": "+8613800138001", "vars": {"n": 1}, "client_ref": "x"},
                         {"to": "+8613800138002", "vars": {"n": 2}}],
        })
        assert r.status_code == 202, r.text
        ids = [a["id"] for a in r.json()["accepted"]]
        for mid in ids:
            wait_for(lambda m=mid: receiver.statuses(m) == LIFECYCLE)
    assert {b["batch_id"] for b in receiver.bodies()} == {r.json()["batch_id"]}


def test_a_receiver_answering_500_twice_then_200_gets_the_event_three_times(
    tmp_path: Path,
) -> None:
    def answer(body: dict[str, Any], seen: int) -> int:
        return 500 if body["status"] == "accepted" and seen < 2 else 200

    receiver = Receiver(SECRET, answer).start()
    try:
        with GatewayProcess(tmp_path, env=FAST_RETRIES) as gw:
            mid = submit(gw, receiver.url)
            wait_for(lambda: receiver.statuses(mid) == LIFECYCLE)
            metrics = httpx.get(f"{gw.base_url}/metrics").text
    finally:
        receiver.stop()
    accepted = [r for r in receiver.requests if r["body"]["status"] == "accepted"]
    assert [r["status"] for r in accepted] == [500, 500, 200]
    assert [r["headers"]["X-Smsgw-Attempt"] for r in accepted] == ["1", "2", "3"]
    assert len({r["body"]["event_id"] for r in accepted}) == 1
    # Nothing later was sent before the first status was taken.
    assert [r["body"]["status"] for r in receiver.requests[:3]] == ["accepted"] * 3
    assert 'smsgw_webhook_failures_total{reason="http_500"} 2.0' in metrics


def test_events_wait_in_redis_while_the_receiver_is_down_across_a_gateway_restart(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    gw = GatewayProcess(tmp_path, env=FAST_RETRIES)
    gw.start()
    try:
        ids = [submit(gw, url) for _ in range(5)]
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


def test_a_slow_receiver_does_not_hold_up_another(tmp_path: Path, receiver: Receiver) -> None:
    slow = Receiver(SECRET, delay=2.0).start()
    env = {**FAST_RETRIES, "SMSGW_WEBHOOKS__CONCURRENCY": "4"}  # one slot per host
    try:
        with GatewayProcess(tmp_path, env=env) as gw:
            slow_ids = [submit(gw, slow.url) for _ in range(5)]
            fast_id = submit(gw, receiver.url)
            wait_for(lambda: receiver.statuses(fast_id) == LIFECYCLE)
            # The slow receiver is still working through its 20 callbacks.
            assert len(slow.requests) < 4 * len(slow_ids)
    finally:
        slow.stop()


# --- MO ----------------------------------------------------------------------


def _settings(mo_url: str) -> Settings:
    return Settings.model_validate({
        "accounts": {
            "shop": {"api_keys": ["k1"], "callback_secret": SECRET, "mo_url": mo_url,
                     "mo_numbers": ["+10690001", "10690002"]},
            "other": {"api_keys": ["k2"], "callback_secret": "x", "mo_url": mo_url,
                      "mo_numbers": ["10690009"]},
        },
        "connectors": {"sim": {"port": 1, "system_id": "x"}},
        "routes": [{"connectors": ["sim"]}],
        "webhooks": {"retry_base": 0.05, "retry_max": 0.2, "poll_interval": 0.02},
    })


def _mo_wiring(store: Store, receiver: Receiver) -> tuple[Settings, Webhooks, Receipts]:
    settings = _settings(receiver.url)
    webhooks = Webhooks(settings, store, "test")
    return settings, webhooks, Receipts(store, settings, on_mo=webhooks.on_mo)


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
    _, webhooks, receipts = _mo_wiring(store, receiver)
    mo = DeliverSm(source_addr_ton=1, source_addr="8613800138000",
                   destination_addr="10690002", data_coding=8,
                   short_message="退订".encode("utf-16-be"))
    assert await receipts.on_deliver("sim", [mo]) == [CommandStatus.ESME_ROK]
    stray = DeliverSm(source_addr="1", destination_addr="5555", short_message=b"who?")
    assert await receipts.on_deliver("sim", [stray]) == [CommandStatus.ESME_ROK]

    [request] = await _mo_requests(webhooks, receiver, 1)
    body = request["body"]
    assert body["type"] == "mo" and body["text"] == "退订"
    assert body["from"] == "+8613800138000" and body["to"] == "10690002"
    assert body["connector"] == "sim"
    assert request["headers"]["X-Smsgw-Signature"] == sign(SECRET, request["raw"])
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
    _, webhooks, receipts = _mo_wiring(store, receiver)
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
    bodies = [r["body"] for r in await _mo_requests(webhooks, receiver, 2)]
    assert sorted((b["text"], b["parts"], b.get("complete", True)) for b in bodies) == [
        ("hello world", 2, True), ("请回复TD退订😀", 3, True)]
    assert await store.mo_overdue(time.time() + 3600) == []  # nothing left behind


async def test_a_concatenated_mo_missing_parts_goes_with_what_came_after_the_timeout(
    store: Store, receiver: Receiver
) -> None:
    settings, webhooks, receipts = _mo_wiring(store, receiver)
    # (an alphanumeric source may hold any character)
    await receipts.on_deliver("sim", [_udh_part(9, 3, 1, "abc", "A|B"),
                                      _udh_part(9, 3, 3, "ghi", "A|B")])
    assert await webhooks.give_up_overdue() == 0  # not yet due
    later = time.time() + settings.webhooks.mo_combine_timeout + 1
    assert await webhooks.give_up_overdue(later) == 1
    assert await webhooks.give_up_overdue(later) == 0  # once
    await receipts.on_deliver("sim", [_udh_part(9, 3, 2, "def", "A|B")])  # too late: dropped
    assert await webhooks.give_up_overdue(later + 3600) == 0
    [body] = [r["body"] for r in await _mo_requests(webhooks, receiver, 1)]
    assert (body["text"], body["parts"], body["complete"]) == ("abcghi", 3, False)
    assert body["from"] == "A|B"
