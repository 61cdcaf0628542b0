"""The store's API section on a real redis-server: the chunk script writes what
the original enqueue writes, idempotency keys are claimed once, and webhook
queues keep order and survive a claim that lapses."""

from __future__ import annotations

import math
import time

from gateway.model import Message, new_id
from gateway.store import Store, idem_key, msg_key


def _message(batch_id: str | None = None, callback: str | None = None) -> Message:
    return Message(
        id=new_id(), account="demo", to="+8613800138000", sender="SHOP", text="hi",
        msg_class="marketing", encoding="gsm7", parts=1, created_at=1.0, expires_at=2.0,
        connectors=["sim"], carrier="China Mobile", callback_url=callback, batch_id=batch_id,
    )


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
        assert await store.redis.zscore("smsgw:expiry", b.id) == math.ceil(b.expires_at + 300)
    counts = await store.batch_counts("b2")
    assert counts == {"queued": 1, "total": 1}
    assert await store.batch_owner("b2") == "demo"
    events = await store.redis.xrange("smsgw:events")
    assert len(events) == 4  # accepted + queued for each of the 2 callback messages
    entries = await store.redis.xrange("smsgw:lane:{sim}:marketing")
    assert len(entries) == 4 and all(set(f) == {b"m"} for _, f in entries)  # hop 0


async def test_a_scheduled_message_waits_outside_its_lane(store: Store) -> None:
    m = _message("b4")
    m.send_at = time.time() + 3600
    await store.enqueue_api("demo", [[store.record(m)]], batch_id="b4", ts=100.0)
    state = await store.get(m.id)
    assert state is not None and state.status == "scheduled"
    assert state.history == [(100.0, "accepted", ""), (100.0, "scheduled", "")]
    assert await store.delayed_count() == 1
    assert await store.redis.xlen("smsgw:lane:{sim}:marketing") == 0
    assert await store.batch_counts("b4") == {"scheduled": 1, "total": 1}


async def test_an_idempotency_key_is_claimed_by_the_first_request_only(store: Store) -> None:
    key = idem_key("demo", "k")
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


async def test_webhook_queue_keeps_order_and_a_lapsed_claim_is_retaken(store: Store) -> None:
    await store.webhook_queue([("m1", b"e1"), ("m1", b"e2"), ("m2", b"f1")], now=100.0)
    claimed = await store.webhook_claim(now=100.0, lease=30, limit=10)
    assert sorted(claimed) == [("m1", b"e1", 0), ("m2", b"f1", 0)]
    assert await store.webhook_claim(now=120.0, lease=30, limit=10) == []  # leased
    # the worker died: after the lease another one gets the same heads
    assert sorted(await store.webhook_claim(now=131.0, lease=30, limit=10)) == [
        ("m1", b"e1", 0), ("m2", b"f1", 0),
    ]
    assert await store.webhook_retry("m1", b"e1", due_at=150.0)
    assert await store.webhook_claim(now=149.0, lease=30, limit=10) == []
    assert await store.webhook_claim(now=150.0, lease=30, limit=10) == [("m1", b"e1", 1)]
    assert await store.webhook_done("m1", b"e1")
    assert not await store.webhook_done("m1", b"e1")  # a second delivery pops nothing
    got = await store.webhook_claim(now=10**10, lease=30, limit=10)
    assert sorted(got) == [("m1", b"e2", 0), ("m2", b"f1", 0)]
    assert await store.webhook_done("m2", b"f1", dead_reason="max_age")
    dead = await store.redis.xrange("smsgw:wh:dead")
    assert dead[0][1][b"q"] == b"m2" and dead[0][1][b"why"] == b"max_age"
