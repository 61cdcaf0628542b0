"""The store's Lua against a real Redis: the status machine as users see it."""

from __future__ import annotations

import asyncio
import time

from gateway.admission.callbacks import Receivers, events_mask
from gateway.core.config import AccountSettings
from gateway.core.model import Message, new_id
from gateway.store import Store
from gateway.store.keys import (
    batch_key,
    batch_owner_key,
    depth_key,
    expiry_key,
    lane_key,
    msg_key,
    wh_due_key,
    wh_queue_key,
)


async def part_submitted(store: Store, connector: str, message_id: str, part: int,
                         smsc_id: str, ttl: int, total: int = 1,
                         match_id: str | None = None) -> bytes | None:
    """One acknowledged part, as the dispatcher records them (in batches);
    `match_id` is the id normalised for correlation (default: `smsc_id`, for
    ids that normalisation leaves alone)."""
    acked = (connector, message_id, part, smsc_id, match_id or smsc_id, ttl, total)
    return (await store.parts_submitted([acked]))[0]


def message(parts: int = 1, callback: str | None = None, batch: str | None = None) -> Message:
    now = time.time()
    return Message(
        id=new_id(), account="demo", to="+8613800138000", sender="SHOP", text="hi",
        msg_class="transactional", encoding="gsm7", parts=parts, created_at=now,
        expires_at=now + 3600, connectors=["sim"], callback_url=callback, batch_id=batch,
    )


async def test_enqueue_persists_record_and_lane_entry(store: Store) -> None:
    m = message()
    await store.ensure_lanes("sim")
    await store.enqueue([m])
    state = await store.get(m.id)
    assert state is not None and state.message == m
    assert state.status == "queued"
    assert [s for _, s, _ in state.history] == ["accepted", "queued"]
    entries = await store.read_lanes("sim", "c1", 10, 10)
    assert [(e.message_id, e.hop) for e in entries] == [(m.id, 0)]


async def test_otp_lane_is_read_before_a_marketing_backlog(store: Store) -> None:
    await store.ensure_lanes("sim")
    marketing = [message() for _ in range(5)]
    for m in marketing:
        m.msg_class = "marketing"
    otp = message()
    otp.msg_class = "otp"
    await store.enqueue(marketing)
    await store.enqueue([otp])
    entries = await store.read_lanes("sim", "c1", 2, 10)
    assert entries[0].message_id == otp.id


async def test_multipart_delivered_only_when_every_part_is(store: Store) -> None:
    m = message(parts=3)
    await store.enqueue([m])
    for part in (1, 2, 3):
        assert await part_submitted(store, "sim", m.id, part, f"s{part}", 600, 3) is None
    assert await store.part_final(m.id, 1, "delivered", "000", "DELIVRD") is None
    assert await store.part_final(m.id, 2, "delivered", "000", "DELIVRD") is None
    assert await store.part_final(m.id, 3, "delivered", "000", "DELIVRD") == "delivered"
    state = await store.get(m.id)
    assert state is not None and state.status == "delivered"
    assert state.smsc_ids == {1: "s1", 2: "s2", 3: "s3"}


async def test_a_part_keeps_its_smsc_id_as_written_and_receipts_meet_it_normalised(
    store: Store,
) -> None:
    """The SMSC answered 0C2800000001: that is what the message shows (in its
    ids and its history), while receipts, normalised the same way, find it
    under c2800000001 — whether they come after the response or before it."""
    m, early = message(parts=2), message()
    await store.enqueue([m, early])
    assert await part_submitted(store, "sim", m.id, 1, "0C2800000001", 600, 2,
                                match_id="c2800000001") is None
    assert await part_submitted(store, "sim", m.id, 2, "0C2800000002", 600, 2,
                                match_id="c2800000002") is None
    state = await store.get(m.id)
    assert state is not None
    assert state.smsc_ids == {1: "0C2800000001", 2: "0C2800000002"}
    assert state.history[2][1:] == ("submitted", "sim 0C2800000001")
    out = await store.apply_receipts([("sim", "c2800000001", b"delivered|000|DELIVRD"),
                                      ("sim", "c2800000002", b"delivered|000|DELIVRD")], 600)
    assert out == [(m.id, None), (m.id, "delivered")]
    assert await store.correlate("sim", "0C2800000001", b"x", 600) is None  # raw: no match

    assert await store.correlate("sim", "c2800000003", b"delivered|000|DELIVRD", 600) is None
    assert await part_submitted(store, "sim", early.id, 1, "0c2800000003", 600,
                                match_id="c2800000003") == b"=delivered"
    state = await store.get(early.id)
    assert state is not None and state.status == "delivered"
    assert state.smsc_ids == {1: "0c2800000003"}


async def test_one_failed_part_makes_the_message_undelivered_and_final(store: Store) -> None:
    m = message(parts=3)
    await store.enqueue([m])
    assert await store.part_final(m.id, 1, "delivered", "000", "DELIVRD") is None
    assert await store.part_final(m.id, 2, "undelivered", "011", "UNDELIV") == "undelivered"
    # Later receipts and status changes never move a final status.
    assert await store.part_final(m.id, 3, "delivered", "000", "DELIVRD") is None
    assert not await store.set_status(m.id, "submitted")
    state = await store.get(m.id)
    assert state is not None
    assert state.status == "undelivered" and state.error_code == "011"


async def test_duplicate_receipt_is_ignored(store: Store) -> None:
    m = message(parts=1)
    await store.enqueue([m])
    assert await store.part_final(m.id, 1, "delivered", "000", "DELIVRD") == "delivered"
    assert await store.part_final(m.id, 1, "delivered", "000", "DELIVRD") is None
    state = await store.get(m.id)
    assert state is not None
    assert [s for _, s, _ in state.history].count("delivered") == 1


async def test_receipt_before_submit_sm_resp_is_kept_and_returned(store: Store) -> None:
    m = message()
    await store.enqueue([m])
    assert await store.correlate("sim", "abc", b"delivered|000|DELIVRD", 600) is None
    # A delivered receipt that waited is applied as the response is recorded.
    assert await part_submitted(store, "sim", m.id, 1, "abc", 600) == b"=delivered"
    state = await store.get(m.id)
    assert state is not None and state.status == "delivered"
    # Once correlated, the next lookup finds the message part directly.
    assert await store.correlate("sim", "abc", b"x", 600) == (m.id, 1)


async def test_status_changes_are_queued_for_the_callbacks_a_message_asked_for(
    store: Store,
) -> None:
    quiet, loud = message(), message(callback="http://127.0.0.1:9/hook")
    loud.webhook = Receivers().spec("demo", AccountSettings(api_keys=["k"]), loud.callback_url,
                                    events_mask(["accepted", "failed"]), loud.id)
    await store.enqueue([quiet, loud])
    await store.set_status(quiet.id, "failed", "x")
    await store.set_status(loud.id, "submitted", "x")  # not asked for
    await store.set_status(loud.id, "failed", "x")
    [queue] = await store.redis.zrange(wh_due_key(0), 0, -1)
    entries = await store.redis.lrange(wh_queue_key(0, queue.decode()), 0, -1)
    assert [e.decode().split("|")[:2] for e in entries] == [[loud.id, "accepted"],
                                                            [loud.id, "failed"]]


async def test_batch_counts_follow_status_changes(store: Store) -> None:
    a, b = message(batch="b1"), message(batch="b1")
    await store.enqueue([a, b])
    await store.part_final(a.id, 1, "delivered", "000", "DELIVRD")
    counts = await store.batch_counts("b1")
    assert counts == {"total": 2, "queued": 1, "delivered": 1}


async def test_failed_early_receipt_is_handed_back_for_the_resend_rules(store: Store) -> None:
    m = message()
    await store.enqueue([m])
    assert await store.correlate("sim", "x1", b"undelivered|011|UNDELIV", 600) is None
    assert await part_submitted(store, "sim", m.id, 1, "x1", 600) == b"undelivered|011|UNDELIV"
    state = await store.get(m.id)
    assert state is not None and state.status == "submitted"


async def test_batched_receipts_apply_or_park(store: Store) -> None:
    a, b = message(), message()
    await store.enqueue([a, b])
    await store.parts_submitted([("sim", a.id, 1, "ida", "ida", 600, 1)])
    out = await store.apply_receipts(
        [("sim", "ida", b"delivered|000|DELIVRD"), ("sim", "idb", b"delivered|000|DELIVRD")], 600
    )
    assert out == [(a.id, "delivered"), None]
    assert await part_submitted(store, "sim", b.id, 1, "idb", 600) == b"=delivered"


async def test_expiry_comes_per_chunk_and_ends_only_messages_still_open(store: Store) -> None:
    now = time.time()
    soon = [message(batch="b9") for _ in range(3)]
    later = message(batch="b9")
    for m in soon:
        m.expires_at = now + 10
    later.expires_at = now + 100
    await store.enqueue_api("demo", [[store.record(m) for m in (*soon, later)]], batch_id="b9")
    # one expiry entry for the three that end in the same second, one for the fourth
    assert await store.redis.zcard(expiry_key(0)) == 2
    await store.part_final(soon[0].id, 1, "delivered", "000", "DELIVRD")
    grace = store.receipt_grace
    assert await store.expire_due(now=now + 9 + grace) == []  # not before its time
    expired = await store.expire_due(now=now + 11 + grace)
    assert sorted(expired) == sorted(m.id for m in soon[1:])
    for m in soon[1:]:
        state = await store.get(m.id)
        assert state is not None and state.status == "expired"
        assert state.history[-1][1:] == ("expired", "validity_elapsed")
    delivered = await store.get(soon[0].id)
    assert delivered is not None and delivered.status == "delivered"
    assert (await store.get(later.id)).status == "queued"  # type: ignore[union-attr]
    assert await store.redis.zcard(expiry_key(0)) == 1
    assert await store.expire_due(now=now + 101 + grace) == [later.id]
    assert await store.redis.zcard(expiry_key(0)) == 0
    counts = await store.batch_counts("b9")
    assert {k: v for k, v in counts.items() if v} == {"total": 4, "delivered": 1, "expired": 3}


async def test_expiry_looks_at_about_limit_messages_per_script_call(store: Store) -> None:
    chunks = [[message() for _ in range(5)] for _ in range(3)]
    for chunk in chunks:
        for m in chunk:
            m.expires_at = 1.0
        await store.enqueue([*chunk])
    later = time.time() + store.receipt_grace
    # one script call takes whole chunks until the limit is reached ...
    assert len(await store.expire_due(limit=6, now=later, rounds=1)) == 10
    # ... and the housekeeper's call goes on while more are due
    await store.enqueue([message() for _ in range(5)])  # not due
    chunk = [message() for _ in range(5)]
    for m in chunk:
        m.expires_at = 1.0
    await store.enqueue(chunk)
    assert len(await store.expire_due(limit=6, now=later)) == 10
    assert await store.expire_due(limit=6, now=later) == []
    assert await store.redis.zcard(expiry_key(0)) == 1


async def test_retention_deletes_records_and_batch_counts_after_their_expiry(
    store: Store
) -> None:
    """When a message's expiry pass comes, it and its batch's counts are given
    `retention` seconds to live, final or not; without retention they stay."""
    done, open_, kept = message(batch="r1"), message(batch="r1"), message(batch="r2")
    for m in (done, open_, kept):
        m.expires_at = 1.0
    await store.enqueue([done, open_])
    await store.part_final(done.id, 1, "delivered", "000", "DELIVRD")
    later = time.time() + store.receipt_grace
    assert await store.expire_due(now=later, retention=3600) == [open_.id]
    for key in (msg_key(done.id), msg_key(open_.id), batch_key("r1"), batch_owner_key("r1")):
        assert 3500 < await store.redis.ttl(key) <= 3600, key
    assert (await store.get(open_.id)).status == "expired"  # type: ignore[union-attr]
    await store.enqueue([kept])
    assert await store.expire_due(now=later) == [kept.id]
    assert await store.redis.ttl(msg_key(kept.id)) == -1  # no expiry set
    assert await store.redis.ttl(batch_key("r2")) == -1


async def test_parts_of_one_message_acknowledged_together(store: Store) -> None:
    m = message(parts=3, batch="b8")
    await store.enqueue([m])
    out = await store.parts_submitted([("sim", m.id, k, f"t{k}", f"t{k}", 600, 3)
                                       for k in (1, 3)])
    assert out == [None, None]
    [view] = await store.dispatch_view([m.id])
    assert view is not None and view.status == "submitted" and set(view.smsc_ids) == {1, 3}
    state = await store.get(m.id)
    assert state is not None
    assert [s for _, s, _ in state.history] == ["accepted", "queued", "submitted"]
    assert state.smsc_ids == {1: "t1", 3: "t3"} and state.connector == "sim"
    assert await store.dispatch_view(["no-such-message"]) == [None]
    out2 = await store.apply_receipts(
        [("sim", f"t{k}", b"delivered|000|DELIVRD") for k in (1, 3)], 600
    )
    assert out2 == [(m.id, None), (m.id, None)]  # part 2 is still open
    assert await part_submitted(store, "sim", m.id, 2, "t2", 600, 3) is None
    assert await store.apply_receipts([("sim", "t2", b"delivered|000|DELIVRD")], 600) == [
        (m.id, "delivered")
    ]
    counts = await store.batch_counts("b8")
    assert {k: v for k, v in counts.items() if v} == {"total": 1, "delivered": 1}


async def test_part_zero_stands_for_every_part(store: Store) -> None:
    m = message(parts=2)
    await store.enqueue([m])
    assert await part_submitted(store, "http", m.id, 0, "h0", 600, 2) is None
    [view] = await store.dispatch_view([m.id])
    assert view is not None and set(view.smsc_ids) == {0}
    assert await store.part_final(m.id, 0, "delivered", "000", "DELIVRD") == "delivered"
    state = await store.get(m.id)
    assert state is not None and state.part_states == {1: "delivered", 2: "delivered"}


async def test_batch_counts_stay_exact_when_one_call_moves_many_messages(store: Store) -> None:
    ms = [message(batch="b7") for _ in range(4)]
    await store.enqueue(ms)
    await store.parts_submitted([("sim", m.id, 1, f"x{i}", f"x{i}", 600, 1)
                                 for i, m in enumerate(ms)])
    assert await store.batch_counts("b7") == {"total": 4, "queued": 0, "submitted": 4}
    receipts = [("sim", "x0", b"delivered|000|DELIVRD"), ("sim", "x1", b"undelivered|011|UNDELIV"),
                ("sim", "x2", b"delivered|000|DELIVRD"), ("sim", "x0", b"delivered|000|DELIVRD")]
    out = await store.apply_receipts(receipts, 600)
    assert [o[1] if o else o for o in out] == ["delivered", "undelivered", "delivered", None]
    counts = await store.batch_counts("b7")
    assert {k: v for k, v in counts.items() if v} == {
        "total": 4, "submitted": 1, "delivered": 2, "undelivered": 1
    }


async def test_a_second_receipt_before_the_response_replaces_the_parked_one(
    store: Store,
) -> None:
    m = message()
    await store.enqueue([m])
    assert await store.correlate("sim", "e1", b"undelivered|011|UNDELIV", 600) is None
    assert await store.apply_receipts([("sim", "e1", b"delivered|000|DELIVRD")], 600) == [None]
    assert await part_submitted(store, "sim", m.id, 1, "e1", 600) == b"=delivered"
    # the correlation replaced the parked receipt: a late duplicate is applied, not parked
    assert await store.apply_receipts([("sim", "e1", b"delivered|000|DELIVRD")], 600) == [
        (m.id, None)
    ]


async def test_acknowledged_entries_leave_the_lane_but_one_in_flight_keeps_its_own(
    store: Store, redis_url: str
) -> None:
    await store.ensure_lanes("sim")
    ms = [message() for _ in range(5)]
    for m in ms:  # one request each: an entry each
        await store.enqueue([m])
    entries = await store.read_lanes("sim", "c1", 10, 10)
    assert [e.message_id for e in entries] == [m.id for m in ms]
    lane = entries[0].lane
    await store.ack([(e.lane, e.entry_id) for e in entries[1:]])
    # the oldest is still in flight: nothing behind it is lost, the rest waits to be trimmed
    assert await store.redis.xlen(lane) == 5
    other = Store.from_url(redis_url)  # c1 died; another worker takes its entry over
    try:
        [again] = await other.reclaim("sim", "c2", 0, 10)
        assert again.message_id == ms[0].id
        await other.ack([(again.lane, again.entry_id)])
    finally:
        await other.close()
    assert await store.redis.xlen(lane) == 1  # the last entry read is kept as the mark
    late = message()
    await store.enqueue([late])
    [entry] = await store.read_lanes("sim", "c1", 10, 10)
    assert entry.message_id == late.id
    await store.ack([(entry.lane, entry.entry_id)])
    assert await store.redis.xlen(lane) == 1
    assert await store.redis.xpending(lane, "dispatch") == {
        "pending": 0, "min": None, "max": None, "consumers": []
    }


async def test_an_entry_in_flight_for_long_does_not_hold_acknowledged_ones(
    store: Store,
) -> None:
    await store.ensure_lanes("sim")
    lane = lane_key(0, "sim", "transactional")
    stuck = message()
    await store.enqueue([stuck])
    [held] = await store.read_lanes("sim", "c1", 10, 10)
    # later traffic, more than TRIM_SPAN_MS of entry id time after the stuck entry
    later_ms = int(held.entry_id.split(b"-")[0]) + 5000
    ms = [message() for _ in range(3)]
    for i, m in enumerate(ms):
        await store.redis.xadd(lane, {"m": m.id}, id=f"{later_ms}-{i}")
    entries = await store.read_lanes("sim", "c1", 10, 10)
    assert [e.message_id for e in entries] == [m.id for m in ms]
    await store.ack([(e.lane, e.entry_id) for e in entries])
    assert [f[b"m"].decode() for _, f in await store.redis.xrange(lane)] == [stuck.id]


async def test_messages_of_one_request_share_lane_entries_done_when_all_are(
    store: Store,
) -> None:
    await store.ensure_lanes("sim")
    ms = [message() for _ in range(40)]
    await store.enqueue(ms)
    assert (await store.lane_depths(["sim"]))["sim:transactional"] == 40
    lane = lane_key(0, "sim", "transactional")
    assert await store.redis.xlen(lane) == 2  # 32 + 8
    entries = await store.read_lanes("sim", "c1", 10, 10)
    assert [e.message_id for e in entries] == [m.id for m in ms[:32]]  # an entry is read whole
    entries += await store.read_lanes("sim", "c1", 10, 10)
    assert [e.message_id for e in entries] == [m.id for m in ms]
    await store.ack([(e.lane, e.entry_id) for e in entries[:31] + entries[32:]])
    # one message of the first entry is not done: that entry stays pending
    pending = await store.redis.xpending(lane, "dispatch")
    assert pending["pending"] == 1 and pending["min"] == entries[0].entry_id
    assert (await store.lane_depths(["sim"]))["sim:transactional"] == 32
    await store.ack([(entries[31].lane, entries[31].entry_id)])
    assert (await store.redis.xpending(lane, "dispatch"))["pending"] == 0
    assert (await store.lane_depths(["sim"]))["sim:transactional"] == 0


async def test_after_a_crash_a_shared_entry_comes_back_without_what_had_left_it(
    store: Store, redis_url: str
) -> None:
    await store.ensure_lanes("sim")
    ms = [message() for _ in range(4)]
    await store.enqueue(ms)
    a, b, c, _in_flight = await store.read_lanes("sim", "worker-a", 10, 10)
    await store.defer(a, time.time() + 3600)  # e.g. the recipient's rate
    await store.reroute(b, ms[1], 0, "failover sim -> sim")  # (same lane, for the test)
    await store.ack([(c.lane, c.entry_id)])
    # worker-a dies with d in flight; another worker takes the entry over
    other = Store.from_url(redis_url)
    try:
        again = await other.reclaim("sim", "worker-b", 0, 100)
        assert sorted(e.message_id for e in again) == sorted([ms[2].id, ms[3].id])
        assert {e.entry_id for e in again} == {a.entry_id}
        # the rerouted message waits in its new entry, the deferred one in the delayed set
        [moved] = await other.read_lanes("sim", "worker-b", 10, 10)
        assert moved.message_id == ms[1].id and moved.entry_id != a.entry_id
        assert await other.delayed_count() == 1
        await other.ack([(e.lane, e.entry_id) for e in [*again, moved]])
        assert (await other.redis.xpending(a.lane, "dispatch"))["pending"] == 0
        assert (await other.lane_depths(["sim"]))["sim:transactional"] == 0
    finally:
        await other.close()


async def test_a_lane_count_gone_wrong_mends_when_the_lane_drains(store: Store) -> None:
    await store.ensure_lanes("sim")
    await store.redis.hset(depth_key(0), lane_key(0, "sim", "transactional"), 99)
    await store.enqueue([message()])
    [entry] = await store.read_lanes("sim", "c1", 10, 10)
    await store.ack([(entry.lane, entry.entry_id)])
    assert (await store.lane_depths(["sim"]))["sim:transactional"] == 0


async def test_history_keeps_failover_and_resend_lines_in_order(store: Store) -> None:
    m = message(parts=2)
    m.connectors = ["sim", "backup"]
    await store.ensure_lanes("sim")
    await store.enqueue([m])
    [entry] = await store.read_lanes("sim", "c1", 10, 10)
    await store.reroute(entry, m, 1, "failover sim -> backup")
    await part_submitted(store, "backup", m.id, 1, "b1", 600, 2)
    assert await store.resend_part(m, 2, 1, "UNDELIV err:011; resend part 2 on backup")
    await part_submitted(store, "backup", m.id, 2, "b2", 600, 2)
    await store.part_final(m.id, 1, "delivered", "000", "DELIVRD err:000")
    await store.part_final(m.id, 2, "delivered", "000", "DELIVRD err:000")
    state = await store.get(m.id)
    assert state is not None
    assert [(s, d) for _, s, d in state.history] == [
        ("accepted", ""), ("queued", ""), ("queued", "failover sim -> backup"),
        ("submitted", "backup b1"), ("submitted", "UNDELIV err:011; resend part 2 on backup"),
        ("delivered", "DELIVRD err:000"),
    ]


async def test_a_status_never_moves_back(store: Store) -> None:
    m = message()
    await store.enqueue([m])
    assert await store.set_status(m.id, "submitted", "sim 1")
    assert not await store.set_status(m.id, "queued")
    assert not await store.set_status(m.id, "submitted")
    state = await store.get(m.id)
    assert state is not None and state.status == "submitted"
    assert [s for _, s, _ in state.history] == ["accepted", "queued", "submitted"]


async def test_parts_are_counted_as_the_last_connector_cut_the_text(store: Store) -> None:
    m = message(parts=3)
    await store.enqueue([m])
    await part_submitted(store, "sim", m.id, 1, "x1", 600, 3)
    # failover: the next connector takes the whole text as one part
    await part_submitted(store, "backup", m.id, 1, "y1", 600, 1)
    assert await store.part_final(m.id, 1, "delivered", "000", "DELIVRD") == "delivered"


async def test_entries_still_worked_on_are_not_reclaimed_by_another_worker(
    store: Store, redis_url: str
) -> None:
    """A worker that holds an entry past the reclaim threshold (a message in a long
    throttle backoff) keeps it by touching it; an entry it stops touching is
    taken over, and a taken-over entry is not claimed back."""
    await store.ensure_lanes("sim")
    held, dropped = message(), message()
    await store.enqueue([held])
    await store.enqueue([dropped])
    entries = await store.read_lanes("sim", "c1", 10, 10)
    assert [e.message_id for e in entries] == [held.id, dropped.id]
    other = Store.from_url(redis_url)
    try:
        await asyncio.sleep(0.3)
        await store.ack([(entries[1].lane, entries[1].entry_id)])  # done: nothing to keep
        assert await store.keep_claimed("c1") == 1
        assert await other.reclaim("sim", "c2", 200, 10) == []  # touched just now
        await asyncio.sleep(0.3)
        [taken] = await other.reclaim("sim", "c2", 200, 10)  # not touched since: c1 is gone
        assert taken.message_id == held.id
        assert await store.keep_claimed("c1") == 0  # c2 owns it now: c1 does not take it back
    finally:
        await other.close()


async def test_an_abandoned_message_keeps_its_shared_entry_pending_for_a_reclaim(
    store: Store, redis_url: str
) -> None:
    """Two messages share a lane entry; one is done, the other failed here (its
    write to Redis failed): the entry is not acknowledged, not kept claimed, and
    a reclaim hands the failed one out again."""
    await store.ensure_lanes("sim")
    done, failed = message(), message()
    await store.enqueue([done, failed])  # one call: one shared entry
    entries = await store.read_lanes("sim", "c1", 10, 10)
    assert len({e.entry_id for e in entries}) == 1
    by_id = {e.message_id: e for e in entries}
    store.abandon(by_id[failed.id].lane, by_id[failed.id].entry_id)
    await store.ack([(by_id[done.id].lane, by_id[done.id].entry_id)])
    pending = await store.redis.xpending(by_id[done.id].lane, "dispatch")
    assert pending["pending"] == 1  # the shared entry was not acknowledged
    assert await store.keep_claimed("c1") == 0
    other = Store.from_url(redis_url)
    try:
        await asyncio.sleep(0.3)
        again = await other.reclaim("sim", "c2", 200, 10)
        assert {e.message_id for e in again} == {done.id, failed.id}
    finally:
        await other.close()


async def test_a_receipt_between_the_two_steps_of_a_submit_sm_resp_records_the_submission(
    store: Store,
) -> None:
    """A worker killed after writing a part's correlation and before the message
    knew of it: the receipt that follows records the submission itself (SMSC id
    as written, connector, a `submitted` line) before the final state."""
    import msgpack

    from gateway.store.keys import corr_key, name_shard

    m = message()
    await store.enqueue([m])
    k = name_shard("ab12", store.shards)
    value = f"{m.id}|1|1|sim|AB12"
    await store._call(store._corr_write, k, (), [msgpack.packb(
        [corr_key(k, "sim", "ab12"), value, "600"], use_bin_type=False)])
    assert await store.apply_receipts([("sim", "ab12", b"delivered|000|DELIVRD")], 600) == [
        (m.id, "delivered")]
    state = await store.get(m.id)
    assert state is not None and state.status == "delivered"
    assert state.smsc_ids == {1: "AB12"} and state.connector == "sim"
    assert [s for _, s, _ in state.history] == ["accepted", "queued", "submitted", "delivered"]
