"""`smsgw demo`: gateway + embedded Redis + simulator, a burst over HTTP, a report."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from gateway.model import FINAL_STATUSES
from loadtest.harness import GatewayProcess

API_KEY = "demo-key"  # the demo account of config/gateway.toml


async def burst(base_url: str, count: int, concurrency: int, timeout: float) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    ids: list[str] = []
    statuses: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(count):
            queue.put_nowait(i)

        async def submit() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = {"to": f"+86138{i:08d}", "from": "SMSGW", "text": f"demo message {i}"}
                r = await client.post("/v1/messages", json=body)
                if r.status_code == 202:
                    ids.append(r.json()["id"])

        started = time.perf_counter()
        await asyncio.gather(*(submit() for _ in range(concurrency)))
        accepted_at = time.perf_counter()
        deadline = time.monotonic() + timeout
        pending = list(ids)
        sem = asyncio.Semaphore(concurrency)
        while pending and time.monotonic() < deadline:

            async def poll(mid: str) -> None:
                async with sem:
                    r = await client.get(f"/v1/messages/{mid}")
                    statuses[mid] = r.json()["status"]

            await asyncio.gather(*(poll(mid) for mid in pending))
            pending = [mid for mid in pending if statuses[mid] not in FINAL_STATUSES]
            if pending:
                await asyncio.sleep(0.2)
        finished = time.perf_counter()
    delivered = sum(1 for s in statuses.values() if s == "delivered")
    return {
        "requested": count,
        "accepted": len(ids),
        "delivered": delivered,
        "other_final": sum(1 for s in statuses.values() if s in FINAL_STATUSES) - delivered,
        "lost": len(pending),
        "accept_per_s": len(ids) / (accepted_at - started),
        "end_to_end_per_s": len(ids) / (finished - started),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=120.0)


def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="smsgw-demo-") as tmp:
        gateway = GatewayProcess(Path(tmp))
        gateway.start()
        try:
            report = asyncio.run(burst(gateway.base_url, args.messages, args.concurrency,
                                       args.timeout))
            sim = gateway.sim_stats()
        finally:
            gateway.stop()
    print(f"{'accepted':<22}{report['accepted']:>12,}")
    print(f"{'delivered':<22}{report['delivered']:>12,}")
    print(f"{'other final':<22}{report['other_final']:>12,}")
    print(f"{'lost (not final)':<22}{report['lost']:>12,}")
    print(f"{'SMSC unique / dup':<22}{sim['unique']:>8,} / {sim['duplicates']:,}")
    print(f"{'accepted per second':<22}{report['accept_per_s']:>12,.0f}")
    print(f"{'end to end per second':<22}{report['end_to_end_per_s']:>12,.0f}")
    return 0 if report["lost"] == 0 and report["accepted"] == args.messages else 1
