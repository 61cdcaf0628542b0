"""Every script call's keys fall in one hash slot — those it declares and every
key it touches inside Lua — so the store runs on Redis Cluster (docs/cluster.md).

Watched on a real single server with MONITOR, which shows each EVALSHA and then
every command its Lua ran (``[0 lua]``), while a store of 4 shards runs every
script it registers."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from redis.commands.core import AsyncScript
from redis.crc import key_slot

from gateway.core.model import Message, id_sequence, new_id
from gateway.store import Settle, Store
from gateway.store.keys import idem_key, idem_shard, wh_queue_name

_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')


def _unescape(raw: bytes) -> bytes:
    return re.sub(rb"\\x([0-9a-f]{2})|\\(.)",
                  lambda m: bytes([int(m[1], 16)]) if m[1] else
                  {b"n": b"\n", b"r": b"\r", b"t": b"\t"}.get(m[2], m[2]), raw)


def _keys(args: list[bytes]) -> list[bytes]:
    """The keys of one command (those this store's Lua runs)."""
    name = args[0].lower()
    if name == b"evalsha":
        return args[3 : 3 + int(args[2])]
    if name == b"xreadgroup":
        rest = args[[a.lower() for a in args].index(b"streams") + 1 :]
        return rest[: len(rest) // 2]
    if name in (b"xinfo", b"xgroup"):
        return [args[2]]
    if name in (b"time",):
        return []
    return [args[1]]


@contextmanager
def monitored(host: str, port: int) -> Iterator[list[tuple[bool, list[bytes]]]]:
    """Commands run meanwhile, as (ran by Lua, args), in order."""
    seen: list[tuple[bool, list[bytes]]] = []
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(b"MONITOR\r\n")
    assert sock.recv(5) == b"+OK\r\n"
    done = threading.Event()

    def read() -> None:
        buf = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            chunk = sock.recv(1 << 16)
            if not chunk:
                return
            buf += chunk
            *lines, buf = buf.split(b"\r\n")
            for line in lines:
                head, _, rest = line.partition(b"] ")
                args = [_unescape(a) for a in _ARG.findall(rest)]
                if args[:2] == [b"ECHO", b"monitor-end"]:
                    done.set()
                    return
                if args:
                    seen.append((head.endswith(b"lua"), args))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield seen
    finally:
        end = socket.create_connection((host, port), timeout=10)
        end.sendall(b"ECHO monitor-end\r\n")
        end.recv(64)
        end.close()
        done.wait(30)
        reader.join(30)
        sock.close()


def _message(mid: str, batch: str | None = None, webhook: str = "") -> Message:
    now = time.time()
    return Message(
        id=mid, account="demo", to="+8613800138000", sender="SHOP", text="hi",
        msg_class="transactional", encoding="gsm7", parts=2, created_at=now,
        expires_at=now + 3600, connectors=["sim", "alt"], batch_id=batch, webhook=webhook,
    )


async def _every_script(store: Store) -> None:
    for connector in ("sim", "alt"):
        await store.ensure_lanes(connector)
    queue = wh_queue_name(1, 0.0, 0, "r1", "demo")
    hook = f"{0xFFFF} {queue}"
    batch = new_id(2)
    next_id = id_sequence(2)
    batched = [_message(next_id(), batch, hook) for _ in range(3)]
    await store.enqueue(batched)
    digest = "d" * 64
    k = idem_shard("demo", digest, store.shards)
    keyed = _message(new_id(k))
    assert await store.enqueue_api(
        "demo", [[store.record(keyed)]],
        idem=(idem_key(k, "demo", digest), "t", b"h", b"r", 60)) is None
    singles = [_message(new_id(s)) for s in (0, 1, 3)]
    await store.optout_add("demo", "+8613800138999")
    singles[2].to = "+8613800138999"
    assert await store.enqueue_records(
        [store.record(m) for m in singles], [(2, "demo", singles[2].to)]) == {2}
    entries = await store.read_lanes("sim", "c1", 100, 10)
    assert len(entries) == 6
    await store.keep_claimed("c1")
    by_id = {e.message_id: e for e in entries}
    assert all(await store.dispatch_view(list(by_id)))
    first, second, third = batched
    # a receipt beats its submit_sm_resp, parked, then applied by it
    assert await store.apply_receipts([("sim", "x1", b"delivered|000|DELIVRD")], 60) == [None]
    acked = [("sim", m.id, p, f"x{i}{p}" if (i, p) != (0, 1) else "x1",
              f"x{i}{p}" if (i, p) != (0, 1) else "x1", 60, 2)
             for i, m in enumerate((first, second, keyed, singles[0])) for p in (1, 2)]
    await store.parts_submitted(acked)
    await store.apply_receipts([("sim", "x02", b"delivered|000|DELIVRD"),
                                ("sim", "x11", b"undeliverable|001|UNDELIV")], 60)
    assert await store.correlate("sim", "x21", b"delivered|000|DELIVRD", 60) is not None
    await store.part_final(keyed.id, 1, "delivered", "000", "DELIVRD")
    await store.resend_part(second, 1, 1, "resent on alt")
    await store.set_status(singles[0].id, "failed", "test")
    await store.reroute(by_id[third.id], third, 1, "failover")
    await store.defer(by_id[singles[1].id], time.time() - 1)
    assert await store.promote_due() == 1
    await store.dead_letter(keyed.id, "failed", "retries", "sim")
    await store.ack([(by_id[m].lane, by_id[m].entry_id) for m in (first.id, second.id)])
    await store.reclaim("sim", "c2", 0, 100)
    await store.record_consumer("gone", b"who")
    await store.take_over("gone", "alt", "c3", 100, b"who")
    await store.forget_consumer("gone", b"who")
    await store.expire_due(now=time.time() + 10 ** 6)
    claims, _ = await store.webhook_claim(time.time() + 10, 30, 100, "tok", 16)
    assert claims
    await store.webhook_settle([Settle(c.queue, c.shard, "tok", len(c.entries)) for c in claims])
    await store.webhook_push(queue, b"!mo", time.time())
    assert await store.mo_part("conv-1", 1, 2, b"a", time.time() + 60, 600) is None
    assert await store.mo_part("conv-1", 2, 2, b"b", time.time() + 60, 600) is not None
    assert await store.mo_done("conv-1", queue, b"!whole", 600)
    await store.rate_acquire("sim", 100, 10, 1)
    await store.auth_failed("127.0.0.9", 60)


async def test_every_script_call_stays_in_one_slot(redis_url: str) -> None:
    store = Store.from_url(redis_url, shards=4)
    await store.redis.flushdb()
    kwargs = store.redis.connection_pool.connection_kwargs
    try:
        with monitored(kwargs["host"], kwargs["port"]) as seen:
            await _every_script(store)
        scripts = {v.sha: name for name, v in vars(store).items()
                   if isinstance(v, AsyncScript)}
        ran: set[str] = set()
        slot: int | None = None
        sha = ""
        touched = 0
        for by_lua, args in seen:
            if by_lua:
                for key in _keys(args):
                    assert key_slot(key) == slot, (scripts.get(sha), args[:3])
                    touched += 1
            elif args[0].lower() == b"evalsha":
                sha = args[1].decode()
                ran.add(sha)
                slots = {key_slot(key) for key in _keys(args)}
                assert len(slots) == 1, (scripts.get(sha), args[3 : 3 + int(args[2])])
                slot = slots.pop()
        assert touched > 100
        assert {scripts[s] for s in ran if s in scripts} == set(scripts.values())
    finally:
        await store.close()
