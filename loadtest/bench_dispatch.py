"""Delivery cost per message, without HTTP: `python -m loadtest.bench_dispatch`.

Starts the embedded redis-server (as `smsgw run` does) and `smsgw smsc-sim` as
its own process, queues N marketing messages through the store's enqueue
script, then runs the gateway's delivery side in this process — the SMPP
connector, the dispatcher and the receipt handler, as `gateway.run.worker` wires
them — until every message is final. Prints messages per second and the CPU
microseconds per message of this process (dispatch + receipts), of Redis and
of the simulator, so a change to the delivery path can be judged on its own.
`--profile FILE` writes a cProfile of the delivery phase.
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
from gateway.connectors import make_connector
from gateway.core.config import load_settings
from gateway.core.model import FINAL_STATUSES
from gateway.dispatch.dispatcher import Dispatcher
from gateway.notify.webhooks import Webhooks
from gateway.receipts.dlr import Receipts
from gateway.receipts.inbound import Inbound
from gateway.receipts.mo import MoRouter
from gateway.run.embedded_redis import EmbeddedRedis
from gateway.store import Store
from loadtest.harness import SimulatorProcess


async def _redis_cpu(store: Store) -> float:
    info = await store.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run(url: str, sim: SimulatorProcess, count: int, binds: int, window: int,
              profile: str | None) -> dict[str, float]:
    settings = load_settings(None, environ={
        "SMSGW_CONNECTORS__SIM__PORT": str(sim.port),
        "SMSGW_CONNECTORS__SIM__BINDS": str(binds),
        "SMSGW_CONNECTORS__SIM__WINDOW": str(window),
    })
    admission = Admission(routes=settings.routes, accounts=settings.accounts,
                          connectors=settings.connectors, messages=settings.messages)
    store = Store.from_url(url, settings.messages.receipt_grace)
    admit = admission.admitter("demo", settings.accounts["demo"], sender="SHOP",
                               msg_class="marketing", batch_id="bench")
    for start in range(0, count, 1000):
        await store.enqueue([
            admit(f"+86138{i:08d}", f"Double 11: everything half price today {i}", None)
            for i in range(start, min(count, start + 1000))
        ])
    receipts = Receipts(store, settings.connectors, settings.retry)
    mo = MoRouter(settings.webhooks, settings.accounts, store,
                  Webhooks(settings.webhooks, settings.accounts, store, "bench"))
    connector = make_connector("sim", settings.connectors["sim"], Inbound(receipts, mo))
    dispatcher = Dispatcher(connector, store, receipts, "bench", dispatch=settings.dispatch,
                            retry=settings.retry, throttle=settings.throttle,
                            carriers=settings.carriers)
    connector.start()
    await connector.wait_bound(10)
    sim_proc = psutil.Process(sim.pid)
    sim_cpu0, redis_cpu0 = sum(sim_proc.cpu_times()[:2]), await _redis_cpu(store)
    times0, wall0 = os.times(), time.perf_counter()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    task = asyncio.create_task(dispatcher.run())
    deadline = time.monotonic() + max(60.0, count / 500)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        counts = await store.batch_counts("bench")
        if sum(counts.get(s, 0) for s in FINAL_STATUSES) >= count:
            break
    wall = time.perf_counter() - wall0
    times = os.times()
    user, system = times.user - times0.user, times.system - times0.system
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    redis_cpu = await _redis_cpu(store) - redis_cpu0
    sim_cpu = sum(sim_proc.cpu_times()[:2]) - sim_cpu0
    dispatcher.stop()
    await asyncio.wait_for(task, 15)
    await connector.stop()
    counts = await store.batch_counts("bench")
    await store.close()
    return {"messages": count, "final": sum(counts.get(s, 0) for s in FINAL_STATUSES),
            "delivered": counts.get("delivered", 0), "seconds": wall,
            "gateway_us": (user + system) / count * 1e6, "gateway_sys_us": system / count * 1e6,
            "redis_us": redis_cpu / count * 1e6, "sim_us": sim_cpu / count * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--binds", type=int, default=1)
    parser.add_argument("--window", type=int, default=256, help="per bind")
    parser.add_argument("--profile", default=None, metavar="FILE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smsgw-dispatch-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        url = server.start()
        sim = SimulatorProcess(Path(tmp) / "sim")
        sim.start()
        try:
            r = uvloop.run(run(url, sim, args.messages, args.binds, args.window, args.profile))
        finally:
            sim.stop()
            server.stop()
    print(f"{r['final']:,} of {r['messages']:,} final ({r['delivered']:,} delivered) in "
          f"{r['seconds']:.1f} s: {r['messages'] / r['seconds']:,.0f} msg/s")
    print(f"CPU per message: gateway delivery {r['gateway_us']:.1f} us "
          f"(of which kernel {r['gateway_sys_us']:.1f} us), "
          f"redis {r['redis_us']:.1f} us, simulator {r['sim_us']:.1f} us "
          f"(load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
