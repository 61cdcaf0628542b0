"""Batch admission benchmark: N recipients in batches against a real `smsgw run`.

    python -m loadtest.bench_batch --recipients 1000000 --batch 10000

Starts the embedded default (config/gateway.toml: embedded redis-server with
AOF everysec, one worker) through loadtest.harness.GatewayProcess with the
**simulator disabled**, so the connector has nothing to bind to and its
dispatcher reads nothing: only admission is measured (parse, number lookup,
template, parts, routing, opt-out check, persistence). A message counts as
accepted when its batch got its 202, which the gateway sends after the record
and lane entry are written by Redis; at the end every batch's total is read
back through GET /v1/batches/{id} and must equal what was accepted.

Prints accepted messages per second and p50/p99 batch latency, plus the load
average, since other work may share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from gateway.core.model import CLASSES
from loadtest.harness import GatewayProcess

AUTH = {"Authorization": "Bearer demo-key"}  # the default config's demo account

# Mobile prefixes (China) that phonenumbers treats as valid, cycled so numbers
# spread over carriers like a real list.
PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139",
            "150", "151", "152", "155", "156", "157", "158", "159",
            "180", "181", "182", "183", "186", "187", "188", "189")


def recipients(count: int, distinct: int, offset: int = 0) -> list[str]:
    out = []
    for i in range(count):
        k = (i % distinct) + offset
        out.append(f"+86{PREFIXES[k % len(PREFIXES)]}{k // len(PREFIXES):08d}")
    return out


def bodies(numbers: list[str], batch: int, msg_class: str) -> list[bytes]:
    out = []
    for start in range(0, len(numbers), batch):
        out.append(orjson.dumps({
            "from": "SHOP",
            "text": "Hi {{name}}, 20% off everything today at SHOP",
            "class": msg_class,
            "messages": [
                {"to": n, "vars": {"name": f"c{start + i}"}}
                for i, n in enumerate(numbers[start : start + batch])
            ],
        }))
    return out


async def run(base_url: str, payloads: list[bytes], concurrency: int) -> dict[str, object]:
    latencies: list[float] = []
    accepted = rejected = 0
    batch_totals: dict[str, int] = {}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    headers = {**AUTH, "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:

        async def worker() -> None:
            nonlocal accepted, rejected
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                r = await client.post("/v1/messages/batch", content=body)
                latencies.append(time.perf_counter() - started)
                if r.status_code != 202:
                    raise RuntimeError(f"{r.status_code}: {r.text[:500]}")
                result = orjson.loads(r.content)
                accepted += len(result["accepted"])
                rejected += len(result["rejected"])
                batch_totals[result["batch_id"]] = len(result["accepted"])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started

        for batch_id, expected in batch_totals.items():
            got = (await client.get(f"/v1/batches/{batch_id}")).json()
            if got["total"] != expected:
                raise RuntimeError(f"batch {batch_id}: {got['total']} stored, {expected} accepted")
    latencies.sort()
    return {
        "accepted": accepted,
        "rejected": rejected,
        "seconds": elapsed,
        "per_second": accepted / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "batches": len(latencies),
    }


def cpu_seconds(root: int) -> dict[str, float]:
    """CPU time (user + system) of a process tree from /proc, by command: the
    figure that stays meaningful when other work shares the cores."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        stats[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / tick)
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _name, _cpu) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    out: dict[str, float] = {}
    for pid in tree:
        if pid in stats:
            _ppid, name, cpu = stats[pid]
            key = "redis" if name.startswith("redis") else "gateway"
            out[key] = out.get(key, 0.0) + cpu
    return out


def report(label: str, r: dict[str, object]) -> None:
    print(
        f"{label}: {r['accepted']:,} accepted ({r['rejected']:,} rejected) in "
        f"{r['seconds']:.2f} s = {r['per_second']:,.0f} messages/s; "
        f"batch latency p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms "
        f"({r['batches']} batches)",
        flush=True,
    )
    cpu = r.get("cpu")
    workers = int(r.get("workers", 1))  # type: ignore[call-overload]
    if isinstance(cpu, dict) and cpu.get("gateway"):
        n = max(1, int(r["accepted"]))  # type: ignore[call-overload]
        g = cpu["gateway"] / n * 1e6
        red = cpu.get("redis", 0.0) / n * 1e6
        # Two idle cores: the gateway can use `workers` of them, Redis one, both
        # share the two; whichever runs out first sets the ceiling.
        ceiling = min(2e6 / (g + red), workers * 1e6 / g, 1e6 / red if red else float("inf"))
        print(
            f"  CPU per accepted message: gateway {g:.1f} µs, redis {red:.1f} µs; "
            f"ceiling on two idle cores with {workers} worker(s): {ceiling:,.0f} messages/s",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=2, help="batches in flight")
    parser.add_argument("--workers", type=int, default=1, help="gateway processes")
    parser.add_argument("--class", dest="msg_class", default="marketing",
                        choices=CLASSES)
    parser.add_argument(
        "--repeat", action="store_true",
        help="send the same list twice and report both runs: the first sees every "
        "number for the first time, the second finds them in the number cache",
    )
    parser.add_argument(
        "--number-cache", type=int, default=None,
        help="messages.number_cache for the gateway (default: the config's 65,536)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the gateway's data dir")
    args = parser.parse_args()

    numbers = recipients(args.recipients, args.recipients)
    payloads = bodies(numbers, args.batch, args.msg_class)
    workdir = Path(tempfile.mkdtemp(prefix="smsgw-bench-"))
    # No simulator, and the connector never counts as failed over: its queue just
    # waits, so the dispatcher reads nothing (after failover_after, 15 s by
    # default, it would start deferring the queued messages and add that churn).
    env = {"SMSGW_SIMULATOR__ENABLED": "false", "SMSGW_LOG__LEVEL": "warning",
           "SMSGW_CONNECTORS__SIM__FAILOVER_AFTER": "86400"}
    if args.number_cache is not None:
        env["SMSGW_MESSAGES__NUMBER_CACHE"] = str(args.number_cache)
    gw = GatewayProcess(workdir, env=env, workers=args.workers)
    print(f"gateway: {args.workers} worker(s), embedded redis, simulator disabled "
          f"(connector unreachable: admission only); {args.recipients:,} recipients in "
          f"batches of {args.batch:,}, {args.concurrency} in flight, class {args.msg_class}, "
          f"number cache {args.number_cache or 'default'}",
          flush=True)
    print(f"load average before: {os.getloadavg()}", flush=True)
    gw.start()
    try:
        assert gw.process is not None
        pid = gw.process.pid

        def measured() -> dict[str, object]:
            before = cpu_seconds(pid)
            result = asyncio.run(run(gw.base_url, payloads, args.concurrency))
            after = cpu_seconds(pid)
            result["cpu"] = {k: after[k] - before.get(k, 0.0) for k in after}
            result["workers"] = args.workers
            return result

        report("run 1 (numbers new to the gateway)" if args.repeat else "result", measured())
        if args.repeat:
            report("run 2 (same list again, number cache warm)", measured())
        print(f"load average after: {os.getloadavg()}", flush=True)
    finally:
        gw.stop(timeout=120)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
