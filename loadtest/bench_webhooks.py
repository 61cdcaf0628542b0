"""Webhook sender cost per callback, without SMPP: `python -m loadtest.bench_webhooks`.

Starts the embedded redis-server (as `smsgw run` does) and the load tests'
receiver (`loadtest.receiver`) as its own process, admits N messages whose
callback spec asks for their final status, moves them all to `delivered` with
the store's receipt script (which queues the callbacks, as in a real run), then
runs the gateway's webhook sender (`gateway.notify.webhooks.Webhooks`, as
`gateway.run.worker` wires it) in this process until the receiver has every final.
Prints callbacks per second, the CPU microseconds per callback of this process
(the sender: leases, rendering, signing, HTTP), of Redis and of the receiver,
and the machine's yardstick, so a change to the sender can be judged alone.

``--batch-size 500`` makes the account a batching receiver; ``--profile FILE``
writes a cProfile of the sending phase.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import tempfile
import time
from pathlib import Path

import psutil
import uvloop

from gateway.admission.admit import Admission
from gateway.core.config import load_settings
from gateway.notify.webhooks import Webhooks
from gateway.run.embedded_redis import EmbeddedRedis
from gateway.store import Store
from loadtest.harness import ReceiverProcess
from loadtest.yardstick import yardstick_ms

SECRET = "bench-secret"


async def _redis_cpu(store: Store) -> float:
    info = await store.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run(url: str, receiver: ReceiverProcess, count: int, batch_size: int,
              concurrency: int, profile: str | None) -> dict[str, float]:
    settings = load_settings(None, environ={
        "SMSGW_ACCOUNTS__DEMO__CALLBACK_SECRET": SECRET,
        "SMSGW_ACCOUNTS__DEMO__CALLBACK_BATCH_SIZE": str(batch_size),
        "SMSGW_ACCOUNTS__DEMO__CALLBACK_CONCURRENCY": str(concurrency),
    })
    store = Store.from_url(url, settings.messages.receipt_grace)
    admit = Admission(
        routes=settings.routes, accounts=settings.accounts, connectors=settings.connectors,
        messages=settings.messages,
    ).admitter(
        "demo", settings.accounts["demo"], sender="SHOP", msg_class="transactional",
        callback_url=receiver.url,
    )
    ttl = 3600
    for start in range(0, count, 1000):
        batch = [admit(f"+86138{i:08d}", f"Your order {i} has shipped", str(i))
                 for i in range(start, min(count, start + 1000))]
        await store.enqueue(batch)
        acks = [("sim", m.id, 1, f"s{m.id}", f"s{m.id}", ttl, 1) for m in batch]
        await store.parts_submitted(acks)
        await store.apply_receipts([("sim", f"s{m.id}", b"delivered|000|DELIVRD")
                                    for m in batch], ttl)
    webhooks = Webhooks(settings.webhooks, settings.accounts, store, "bench")
    recv_proc = psutil.Process(receiver.pid)
    recv_cpu0, redis_cpu0 = sum(recv_proc.cpu_times()[:2]), await _redis_cpu(store)
    times0, wall0 = os.times(), time.perf_counter()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    task = asyncio.create_task(webhooks.run())
    deadline = time.monotonic() + max(60.0, count / 200)
    finals = 0
    while time.monotonic() < deadline and finals < count:
        await asyncio.sleep(0.2)
        finals = int(receiver.stats().get("finals", 0))
    wall = time.perf_counter() - wall0
    times = os.times()
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    redis_cpu = await _redis_cpu(store) - redis_cpu0
    recv_cpu = sum(recv_proc.cpu_times()[:2]) - recv_cpu0
    webhooks.stop()
    await asyncio.wait_for(task, 30)
    await store.close()
    stats = receiver.stats()
    user, system = times.user - times0.user, times.system - times0.system
    return {"messages": count, "finals": finals, "requests": stats.get("requests", 0),
            "duplicated": stats.get("duplicated_finals", 0),
            "bad_signatures": stats.get("bad_signatures", 0), "seconds": wall,
            "sender_us": (user + system) / count * 1e6, "redis_us": redis_cpu / count * 1e6,
            "receiver_us": recv_cpu / count * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1, help="events per POST")
    parser.add_argument("--concurrency", type=int, default=16, help="lanes of the receiver")
    parser.add_argument("--profile", default=None, metavar="FILE")
    args = parser.parse_args()
    stick = yardstick_ms()
    with tempfile.TemporaryDirectory(prefix="smsgw-webhooks-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        url = server.start()
        receiver = ReceiverProcess(Path(tmp) / "receiver", SECRET)
        receiver.start()
        try:
            r = uvloop.run(run(url, receiver, args.messages, args.batch_size,
                               args.concurrency, args.profile))
        finally:
            receiver.stop()
            server.stop()
    print(f"{r['finals']:,} of {r['messages']:,} finals at the receiver in {r['seconds']:.2f} s "
          f"({r['requests']:,} requests, batch size {args.batch_size}, "
          f"{args.concurrency} lanes): {r['finals'] / r['seconds']:,.0f} callbacks/s; "
          f"duplicated {r['duplicated']}, bad signatures {r['bad_signatures']}")
    print(f"CPU per callback: sender {r['sender_us']:.1f} us, redis {r['redis_us']:.1f} us, "
          f"receiver {r['receiver_us']:.1f} us; yardstick {stick} ms "
          f"(load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
