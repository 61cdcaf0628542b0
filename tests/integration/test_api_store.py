"""The store's API section on a real redis-server: the chunk script writes what
the original enqueue writes, idempotency keys are claimed once, and webhook
queues keep order and survive a claim that lapses."""

from __future__ import annotations

import math
import time

import orjson

from gateway.admission.callbacks import Receivers, events_mask
from gateway.core.config import AccountSettings
from gateway.core.model import Message, new_id
from gateway.notify.webhooks import render
from gateway.store import WH_FIELDS, Claim, Settle, Store
from gateway.store.keys import (
    expiry_key,
    idem_key,
    lane_key,
    msg_key,
    wh_dead_key,
    wh_due_key,
    wh_queue_key,
    wh_queue_name,
)

ACCOUNT = AccountSettings(api_keys=["k"])
RECEIVERS = Receivers()


def _message(batch_id: str | None = None, callback: str | None = None,
             events: tuple[str, ...] = ("accepted", "queued")) -> Message:
    m = Message(
        id=new_id(), account="demo", to="+8613800138000", sender="SHOP", text="hi",
        msg_class="marketing", encoding="gsm7", parts=1, created_at=1.0, expires_at=2.0,
        connectors=["sim"], carrier="China Mobile", callback_url=callback, batch_id=batch_id,
    )
    m.webhook = RECEIVERS.spec("demo", ACCOUNT, callback, events_mask(events), m.id)
    return m


async def test_chunk_script_writes_record_lane_expiry_and_counts(store: Store) -> None:
    for batch_id, callback in ((None, None), ("b1", None), (None, "http://x"), ("b2", "http://x")):
        b = _message(batch_id, callback)
        assert await store.enqueue_api("demo", [[store.record(b)]], batch_id=batch_id) is None
        hb = await store.redis.hgetall(msg_key(b.id))
        assert Message.unpack(hb[b"r"]) == b
        assert hb[b"s"] == b"queued"
        # account and parts live in the record only; w and b when they apply
        assert set(hb) == {b"r", b"s", b"h"} | ({b"w"} if callback else set()) | (
            {b"b"} if batch_id else set())
        state = await store.get(b.id)
        assert state is not None
        stamp = state.history[0][0]
        assert state.history == [(stamp, "accepted", ""), (stamp, "queued", "")]
        # expiry = validity + receipt grace, rounded up to the second
        assert await store.redis.zscore(expiry_key(0), b.id) == math.ceil(b.expires_at + 300)
    counts = await store.batch_counts("b2")
    assert counts == {"queued": 1, "total": 1}
    assert await store.batch_owner("b2") == "demo"
    # accepted + queued for each of the 2 callback messages, in their receiver lanes
    queued = []
    for queue in await store.redis.zrange(wh_due_key(0), 0, -1):
        queued += await store.redis.lrange(wh_queue_key(0, queue.decode()), 0, -1)
    assert sorted(e.split(b"|")[1] for e in queued) == [b"accepted", b"accepted",
                                                         b"queued", b"queued"]
    entries = await store.redis.xrange(lane_key(0, "sim", "marketing"))
    assert len(entries) == 4 and all(set(f) == {b"m"} for _, f in entries)  # hop 0


async def test_a_scheduled_message_waits_outside_its_lane(store: Store) -> None:
    m = _message("b4")
    m.send_at = time.time() + 3600
    await store.enqueue_api("demo", [[store.record(m)]], batch_id="b4", ts=100.0)
    state = await store.get(m.id)
    assert state is not None and state.status == "scheduled"
    assert state.history == [(100.0, "accepted", ""), (100.0, "scheduled", "")]
    assert await store.delayed_count() == 1
    assert await store.redis.xlen(lane_key(0, "sim", "marketing")) == 0
    assert await store.batch_counts("b4") == {"scheduled": 1, "total": 1}


async def test_an_idempotency_key_is_claimed_by_the_first_request_only(store: Store) -> None:
    key = idem_key(0, "demo", "k")
    first = [[store.record(_message("b3")) for _ in range(3)], [store.record(_message("b3"))]]
    spec = (key, "token-1", b"hash-1", b"response-1", 60)
    assert await store.enqueue_api("demo", first, batch_id="b3", idem=spec) is None
    second = [[store.record(_message("b3"))], [store.record(_message("b3"))]]
    prior = await store.enqueue_api(
        "demo", second, batch_id="b3", idem=(key, "token-2", b"hash-2", b"response-2", 60)
    )
    assert prior == (b"hash-1", b"response-1")
    assert (await store.batch_counts("b3"))["total"] == 4
    assert 0 < await store.redis.ttl(key) <= 60


async def test_a_receiver_queue_is_leased_whole_and_settled_only_by_its_lease(
    store: Store,
) -> None:
    q = wh_queue_name(1, 0, 0, "r1", "demo")
    for entry in (b"!e1", b"!e2", b"!e3"):
        await store.webhook_push(q, entry, now=100.0)
    claims, _ = await store.webhook_claim(100.0, 30, 10, "t1", single=2)
    assert claims == [Claim(q, 0, 0, [(b"!e1", None), (b"!e2", None)])]
    assert await store.webhook_claim(120.0, 30, 10, "t2", single=2) == ([], 130.0)  # leased
    # The worker died: after the lease another one gets the same entries...
    claims, _ = await store.webhook_claim(131.0, 30, 10, "t3", single=2)
    assert [c.entries for c in claims] == [[(b"!e1", None), (b"!e2", None)]]
    # ...and the dead one's late settle does nothing.
    await store.webhook_settle([Settle(q, 0, "t1", 2)])
    assert await store.redis.llen(wh_queue_key(0, q)) == 3
    # e1 taken, e2 failed: e2 is the head, one attempt against it, due at 150.
    await store.webhook_settle([Settle(q, 0, "t3", 1, retry_at=150.0)])
    assert await store.webhook_claim(149.0, 30, 10, "t4", single=2) == ([], 150.0)
    claims, _ = await store.webhook_claim(150.0, 30, 10, "t4", single=2)
    assert claims == [Claim(q, 0, 1, [(b"!e2", None), (b"!e3", None)])]
    await store.webhook_settle([Settle(q, 0, "t4", 0, dead=1, reason="max_age http_500")], 150.0)
    dead = await store.redis.xrange(wh_dead_key(0))
    assert [(f[b"e"], f[b"why"]) for _, f in dead] == [(b"!e2", b"max_age http_500")]
    claims, _ = await store.webhook_claim(150.0, 30, 10, "t5", single=2)
    assert claims == [Claim(q, 0, 0, [(b"!e3", None)])]  # attempts start again
    await store.webhook_settle([Settle(q, 0, "t5", 1)])
    assert await store.webhook_claim(10**10, 30, 10, "t6", single=2) == ([], None)
    assert not await store.redis.exists(wh_queue_key(0, q))


async def test_a_claim_reads_a_status_callback_with_its_message_and_skips_a_busy_receiver(
    store: Store,
) -> None:
    m = _message(callback="http://x/hook", events=("queued",))
    await store.enqueue_api("demo", [[store.record(m)]])
    _mask, queue = m.webhook.split(" ")
    other = wh_queue_name(1, 0, 0, "r9", "demo")
    await store.webhook_push(other, b"!mo", now=0.0)
    claims, _ = await store.webhook_claim(10**10, 30, 10, "t", single=8, skip=["r9:demo"])
    [claim] = claims
    [(entry, fields)] = claim.entries
    assert claim.queue == queue and entry.startswith(f"{m.id}|queued|".encode())
    assert fields is not None and Message.unpack(fields[0]) == m  # r, then c, e, h...
    assert len(fields) == len(WH_FIELDS)


async def test_a_status_callback_carries_every_part_s_smsc_id_as_the_smsc_wrote_it(
    store: Store,
) -> None:
    """The claim that reads a callback's message fields brings the SMSC ids of
    all its parts with them (parts 2.. by a second HMGET in the same script):
    the receiver sees 0C2800000001, not the normalised c2800000001."""
    m = _message(callback="http://x/hook", events=("queued", "submitted"))
    m.parts = 3
    await store.enqueue_api("demo", [[store.record(m)]])
    await store.parts_submitted(
        [("sim", m.id, k, f"0C28{k:08X}", f"c28{k:08x}", 600, 3) for k in (1, 2, 3)]
    )
    claims, _ = await store.webhook_claim(10**10, 30, 10, "t", single=8)
    [claim] = claims
    bodies = [orjson.loads(c.body) for c in (render(e, f) for e, f in claim.entries) if c]
    assert [b["status"] for b in bodies] == ["queued", "submitted"]
    assert bodies[0]["smsc_message_ids"] == {}  # not routed yet when it was queued
    assert bodies[1]["smsc_message_ids"] == {
        "1": "0C2800000001", "2": "0C2800000002", "3": "0C2800000003"
    }
    assert list(bodies[1]["smsc_message_ids"]) == ["1", "2", "3"]  # in part order


async def test_single_messages_of_several_accounts_share_a_call_and_opt_outs_leave_one_out(
    store: Store,
) -> None:
    a, b, c = _message(), _message(), _message()
    b.account, c.to = "other", "+8613800138111"
    await store.optout_add("demo", "+8613800138111")
    left_out = await store.enqueue_records(
        [store.record(m) for m in (a, b, c)],
        [(0, "demo", a.to), (2, "demo", c.to)],
    )
    assert left_out == {2}
    for m in (a, b):
        state = await store.get(m.id)
        assert state is not None and state.message == m and state.status == "queued"
    assert not await store.redis.exists(msg_key(c.id))
    members = await store.redis.zrange(expiry_key(0), 0, -1)
    assert not any(c.id.encode() in m for m in members)
    assert await store.lane_depths(["sim"]) == {"sim:otp": 0, "sim:transactional": 0,
                                                "sim:marketing": 2}
    assert await store.enqueue_records([store.record(_message())]) == set()
