"""The typed seams between stages, as a user would notice them: a receipt is a
receipt whichever connector brought it, and an MO from a real SMSC reaches the
account that owns the number. Real Redis, a real simulator process, a real
SMPP connector and a real webhook receiver on loopback."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from fastapi import FastAPI

from gateway.connectors.smpp import SmppConnector
from gateway.core.config import Settings
from gateway.core.events import Receipt
from gateway.core.model import Message, new_id
from gateway.notify.webhooks import Webhooks
from gateway.receipts.dlr import Receipts
from gateway.receipts.inbound import Inbound
from gateway.receipts.mo import MoRouter
from gateway.receipts.provider_http import receipts_router
from gateway.store import Store
from protocols.receipt import Receipt as ReceiptText
from protocols.receipt import format_receipt
from protocols.smpp import DeliverSm, Tag
from tests.integration.conftest import SECRET, SimProcess
from tests.integration.receiver import Receiver

TOKEN = "provider-token"


def _settings(sim_port: int = 1, mo_url: str = "http://127.0.0.1:1/") -> Settings:
    return Settings.model_validate({
        "accounts": {"shop": {"api_keys": ["k1"], "callback_secret": SECRET, "mo_url": mo_url,
                              "callback_allow": ["127.0.0.1"], "mo_numbers": ["10690000"]}},
        "connectors": {
            "sim": {"port": sim_port, "system_id": "smsgw", "password": "secret"},
            "prov": {"kind": "http", "url": "http://127.0.0.1:1/send",
                     "receipt_token": TOKEN},
        },
        "routes": [{"connectors": ["sim"]}],
        "webhooks": {"retry_base": 0.05, "retry_max": 0.2, "poll_interval": 0.02},
    })


def _message(connector: str) -> Message:
    now = time.time()
    return Message(id=new_id(), account="shop", to="+8613800138000", sender="SHOP",
                   text="hi", msg_class="transactional", encoding="gsm7", parts=1,
                   created_at=now, expires_at=now + 3600, connectors=[connector])


async def test_a_receipt_from_an_http_provider_and_one_over_smpp_resolve_alike(
        store: Store) -> None:
    """The same SMSC answer, once as an SMPP deliver_sm and once as a provider's
    JSON, becomes the same Receipt (id as written, id normalised, status,
    error) and moves its message the same way."""
    settings = _settings()
    seen: list[Receipt] = []

    class Recording(Receipts):
        async def on_receipts(self, batch: list[Receipt]) -> None:  # type: ignore[override]
            seen.extend(batch)
            await super().on_receipts(batch)

    receipts = Recording(store, settings.connectors, settings.retry)
    smpp_msg, http_msg = _message("sim"), _message("prov")
    await store.enqueue([smpp_msg, http_msg])
    for connector, m in (("sim", smpp_msg), ("prov", http_msg)):
        await store.parts_submitted([(connector, m.id, 1 if connector == "sim" else 0,
                                      "0c2800000001", "c2800000001", 600, 1)])

    mo = MoRouter(settings.webhooks, settings.accounts, store,
                  Webhooks(settings.webhooks, settings.accounts, store, "test"))
    connector = SmppConnector("sim", settings.connectors["sim"], Inbound(receipts, mo))
    text = format_receipt(ReceiptText("0c2800000001", 1, 0, None, None, "UNDELIV", "011", ""))
    pdu = DeliverSm(esm_class=0x04, short_message=text.encode())
    assert await connector._handle([pdu]) == [0]

    app = FastAPI()
    app.include_router(receipts_router(settings.connectors, receipts))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gw") as client:
        r = await client.post("/v1/receipts/prov", headers={"Authorization": f"Bearer {TOKEN}"},
                              json={"id": "0c2800000001", "status": "undelivered",
                                    "error_code": "011"})
        assert r.status_code == 204

    over_smpp, over_http = seen
    assert (over_smpp.connector, over_http.connector) == ("sim", "prov")
    fields = [(r.smsc_id, r.smsc_id_key, r.status, r.error) for r in seen]
    assert fields == [("0c2800000001", "c2800000001", "UNDELIV", "011")] * 2
    for m in (smpp_msg, http_msg):
        state = await store.get(m.id)
        assert state is not None
        assert (state.status, state.error_code) == ("undelivered", "011")
        assert state.smsc_ids[1 if m is smpp_msg else 0] == "0c2800000001"


async def test_an_mo_from_the_simulator_reaches_the_account_that_owns_the_number(
        tmp_path: Path, store: Store, receiver: Receiver) -> None:
    """The simulator sends MO deliver_sm to the service number; the SMPP
    connector turns them into Mo events, gateway/receipts/mo.py routes them to
    the account with that number, and the webhook sender POSTs them, once each."""
    sim = SimProcess(tmp_path, "--mo-rate", "20", "--mo-count", "3", "--mo-text", "TD {n}",
                     "--mo-to", "10690000").start()
    settings = _settings(sim.port, receiver.url)
    webhooks = Webhooks(settings.webhooks, settings.accounts, store, "test")
    mo = MoRouter(settings.webhooks, settings.accounts, store, webhooks)
    inbound = Inbound(Receipts(store, settings.connectors, settings.retry), mo)
    connector = SmppConnector("sim", settings.connectors["sim"], inbound)
    connector.start()
    sender = asyncio.create_task(webhooks.run())
    try:
        assert await connector.wait_bound(10)
        for _ in range(200):  # bounded: 10 s
            if len(receiver.requests) >= 3:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # one too many would show
    finally:
        webhooks.stop()
        await sender
        await connector.stop()
        sim.stop()
    bodies = [r["events"][0] for r in receiver.requests]
    assert sorted(b["text"] for b in bodies) == ["TD 1", "TD 2", "TD 3"]
    assert {(b["type"], b["to"], b["connector"], b["parts"]) for b in bodies} == {
        ("mo", "10690000", "sim", 1)}
    assert all(b["from"].startswith("+") for b in bodies)  # international numbers
    assert receiver.bad_signatures == 0


async def test_a_concatenated_mo_over_sar_is_reassembled_by_the_mo_stage(
        store: Store, receiver: Receiver) -> None:
    """Two SAR parts on the connector, in reverse order: gateway/receipts/mo.py
    joins them and queues one webhook; nothing is left in Redis."""
    settings = _settings(mo_url=receiver.url)
    webhooks = Webhooks(settings.webhooks, settings.accounts, store, "test")
    mo = MoRouter(settings.webhooks, settings.accounts, store, webhooks)
    connector = SmppConnector("sim", settings.connectors["sim"],
                              Inbound(Receipts(store, settings.connectors, settings.retry), mo))
    parts = []
    for seq, text in ((2, "world"), (1, "hello ")):
        pdu = DeliverSm(source_addr_ton=1, source_addr="8613900139000",
                        destination_addr="10690000", short_message=text.encode())
        for tag, value in ((Tag.SAR_MSG_REF_NUM, 42), (Tag.SAR_TOTAL_SEGMENTS, 2),
                           (Tag.SAR_SEGMENT_SEQNUM, seq)):
            pdu.set(tag, value)
        parts.append(pdu)
    assert await connector._handle(parts[:1]) == [0]
    assert await connector._handle(parts[1:]) == [0]
    task = asyncio.create_task(webhooks.run())
    try:
        for _ in range(200):
            if receiver.requests:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
    finally:
        webhooks.stop()
        await task
    [body] = [r["events"][0] for r in receiver.requests]
    assert (body["text"], body["parts"], body["from"]) == ("hello world", 2, "+8613900139000")
    assert await store.mo_overdue(time.time() + 3600) == []
