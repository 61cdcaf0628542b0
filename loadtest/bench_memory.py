"""Redis memory per message: `python -m loadtest.bench_memory [--messages N]`.

Starts the embedded redis-server (as `smsgw run` does) on a temporary data dir,
then takes N marketing messages through the store's own scripts — enqueue, part
acknowledged, DELIVRD receipt — and prints Redis's used_memory growth per
message (lanes emptied, as the dispatcher leaves them).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from gateway.admission.admit import Admission, Submission
from gateway.core.config import load_settings
from gateway.run.embedded_redis import EmbeddedRedis
from gateway.store import Store
from gateway.store.keys import lane_key


async def measure(url: str, count: int) -> float:
    settings = load_settings(None, environ={})
    admission = Admission(routes=settings.routes, accounts=settings.accounts,
                          connectors=settings.connectors, messages=settings.messages)
    account = settings.accounts["demo"]
    store = Store.from_url(url)
    try:
        before = (await store.redis.info("memory"))["used_memory"]
        messages = [
            admission.admit("demo", account, Submission(
                to=f"+86138{i:08d}", sender="SHOP", msg_class="marketing",
                text=f"Double 11: everything half price today only {i}",
            ))
            for i in range(count)
        ]
        for i in range(0, count, 1000):
            chunk = messages[i:i + 1000]
            await store.enqueue(chunk)
            await store.parts_submitted(
                [("sim", m.id, 1, f"{i + j:x}", f"{i + j:x}", 86_400, 1)
                 for j, m in enumerate(chunk)]
            )
            await store.apply_receipts(
                [("sim", f"{i + j:x}", b"delivered|000|DELIVRD") for j in range(len(chunk))],
                3600,
            )
        await store.redis.delete(lane_key(0, "sim", "marketing"))
        after = (await store.redis.info("memory"))["used_memory"]
        return (after - before) / count
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smsgw-mem-") as tmp:
        server = EmbeddedRedis(Path(tmp))
        url = server.start()
        try:
            per = asyncio.run(measure(url, args.messages))
        finally:
            server.stop()
    print(f"{args.messages:,} delivered messages: {per:,.0f} bytes of Redis memory each")


if __name__ == "__main__":
    main()
