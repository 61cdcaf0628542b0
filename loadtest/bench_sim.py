"""Capacity of `smsgw smsc-sim` on one core: a flat-out ESME (our protocols.smpp
over gateway.core.smpp_transport) submits with a deep window on several binds and
acknowledges every receipt; prints submit_sm/resp and receipts per second.

    python -m loadtest.bench_sim --port 2776 -n 200000 --binds 4 --window 2000

Run the simulator in its own process (`smsgw smsc-sim --port 2776 --receipt-delay 0`)
so the two do not share a core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from gateway.core.smpp_transport import SmppProtocol
from protocols.smpp import BindTransceiver, CommandStatus, DeliverSm, Role, SubmitSm


class BenchEsme(SmppProtocol):
    role = Role.ESME

    def __init__(self) -> None:
        super().__init__()
        self.receipts = 0
        self.mo = 0

    def on_request(self, pdu: Any) -> None:
        if isinstance(pdu, DeliverSm):
            if pdu.esm_class & 0x04:
                self.receipts += 1
            else:
                self.mo += 1
            self.send(pdu.make_resp())
        else:
            super().on_request(pdu)


async def connect(host: str, port: int, system_id: str = "bench", password: str = "bench",
                  timeout: float = 5.0) -> BenchEsme:
    loop = asyncio.get_running_loop()
    _t, esme = await loop.create_connection(BenchEsme, host, port)
    resp = await esme.request(BindTransceiver(system_id=system_id, password=password), timeout)
    if resp.command_status != CommandStatus.ESME_ROK:
        esme.close()
        raise ConnectionError(f"bind refused: 0x{resp.command_status:08x}")
    return esme


async def bench(host: str, port: int, count: int, binds: int, window: int,
                receipts: bool, timeout: float) -> dict[str, Any]:
    esmes = [await connect(host, port) for _ in range(binds)]
    statuses: dict[int, int] = {}
    per_bind = count // binds
    started = time.perf_counter()

    async def run(esme: BenchEsme, offset: int) -> None:
        sem = asyncio.Semaphore(window)

        async def one(i: int) -> None:
            try:
                pdu = SubmitSm(source_addr="BENCH", destination_addr=f"86138{i:08d}",
                               registered_delivery=1 if receipts else 0,
                               short_message=f"bench message {i}".encode())
                resp = await esme.request(pdu, timeout)
                statuses[resp.command_status] = statuses.get(resp.command_status, 0) + 1
            finally:
                sem.release()

        tasks = []
        for i in range(offset, offset + per_bind):
            await sem.acquire()
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)

    await asyncio.gather(*(run(e, k * per_bind) for k, e in enumerate(esmes)))
    acked = time.perf_counter()
    expected = per_bind * binds if receipts else 0
    deadline = time.monotonic() + timeout
    while sum(e.receipts for e in esmes) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    done = time.perf_counter()
    got = sum(e.receipts for e in esmes)
    for e in esmes:
        await e.unbind()
    return {
        "submit_sm": per_bind * binds,
        "statuses": {f"0x{k:08x}": v for k, v in statuses.items()},
        "submit_resp_per_s": round(per_bind * binds / (acked - started)),
        "receipts": got,
        "all_per_s": round(per_bind * binds / (done - started)),
        "seconds": round(done - started, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2776)
    p.add_argument("-n", type=int, default=100_000)
    p.add_argument("--binds", type=int, default=4)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--no-receipts", action="store_true")
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args()
    import uvloop

    print(json.dumps(uvloop.run(bench(a.host, a.port, a.n, a.binds, a.window,
                                      not a.no_receipts, a.timeout))))


if __name__ == "__main__":
    main()
