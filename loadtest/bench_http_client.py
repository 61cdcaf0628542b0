"""CPU per webhook POST of candidate asyncio HTTP clients.

``python -m loadtest.bench_http_client [-n 20000] [--concurrency 16,64]``

Starts the webhook receiver (`loadtest.receiver`, signature check off) as its
own process, then, each in a fresh process of its own, POSTs a ~450-byte JSON
status callback ``-n`` times over keep-alive connections with ``--concurrency``
requests in flight, through:

- ``httpx``: ``httpx.AsyncClient(timeout=..., limits=httpx.Limits(max_connections=C))``,
  as the gateway's webhook sender uses it today;
- ``aiohttp``: ``aiohttp.ClientSession`` with ``TCPConnector(limit=C)``;
- ``aiosonic``: ``aiosonic.HTTPClient`` with a pool of C connections (and no
  recycling of a connection after 1,000 requests, its default);
- ``httpx-nosniff``: the same with ``sys.modules["sniffio"] = None``. httpcore
  1.0 runs ``import sniffio`` on every lock it makes (twice a request); where
  sniffio is not installed (anyio 4 no longer needs it, so this venv has none)
  each failed import searches all of ``sys.path`` again. With the ``None``
  entry the import fails at once, as it would with sniffio present: the row
  shows what that search costs, without installing anything;
- ``smsgw``: the webhook sender's own client (`gateway.notify.client`),
  pooled per host with up to C idle connections, loopback let through by an
  allowlist as the tests' receivers are;
- ``raw``: the load generator's own client (`loadgen.RawHttp`, one connection
  per task), as a floor: an HTTP/1.1 request written by hand.

The figure is the client process's CPU (``time.process_time``: every thread)
per request after a warm-up, beside requests per second and the receiver's CPU
per request; the machine's yardstick (`loadtest.yardstick`) is printed with
them. A client that does not import is skipped, and the table says so.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from loadtest.harness import ReceiverProcess
from loadtest.yardstick import yardstick_ms

CLIENTS = ("httpx", "httpx-nosniff", "aiohttp", "aiosonic", "smsgw", "raw")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def callback_body() -> bytes:
    """A delivered callback shaped like the gateway's (gateway.notify.webhooks.status_body)."""
    body = orjson.dumps({
        "type": "status",
        "event_id": "01JD3W8ZK4Q9X7M2N5B6C1V0RT",
        "id": "01JD3W8Y2F6H9K3M5P7Q1S4T6V",
        "client_ref": "order-2024-11-11-000000123456",
        "batch_id": "01JD3W8XAB3C5D7E9F1G3H5J7K",
        "status": "delivered",
        "error_code": None,
        "parts": 1,
        "connector": "sim",
        "carrier": "China Mobile",
        "timestamps": {
            "accepted": "2024-11-11T00:00:00.123Z",
            "queued": "2024-11-11T00:00:00.125Z",
            "submitted": "2024-11-11T00:00:00.180Z",
            "delivered": "2024-11-11T00:00:00.236Z",
        },
        "to": "+8613800001234",
    })
    return body


def callback_headers(body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    mac = hmac.new(b"bench", ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "User-Agent": "smsgw-webhooks/1",
        "X-Smsgw-Signature": "sha256=" + mac,
        "X-Smsgw-Timestamp": ts,
        "X-Smsgw-Event-Id": "01JD3W8ZK4Q9X7M2N5B6C1V0RT",
        "X-Smsgw-Attempt": "1",
    }


# --- one client, in its own process ----------------------------------------------

Post = Callable[[], Awaitable[int]]


async def _drive(post_for_task: Callable[[], Post], n: int, concurrency: int,
                 warmup: int) -> dict[str, Any]:
    """`concurrency` tasks share a count of `n` requests; each task has its own `post`
    (the same one in the warm-up and the measured run, so connections carry over)."""
    errors: dict[str, int] = {}
    posts = [post_for_task() for _ in range(concurrency)]

    async def run(count: int) -> int:
        left = count
        ok = 0

        async def task(post: Post) -> None:
            nonlocal left, ok
            while left > 0:
                left -= 1
                try:
                    status = await post()
                except Exception as exc:  # counted and shown: a client that fails is a result
                    name = type(exc).__name__
                    errors[name] = errors.get(name, 0) + 1
                    continue
                if status == 200:
                    ok += 1
                else:
                    errors[f"http_{status}"] = errors.get(f"http_{status}", 0) + 1

        await asyncio.gather(*(task(post) for post in posts))
        return ok

    await run(warmup)  # connections open, code paths warm
    errors.clear()
    cpu0, t0 = time.process_time(), time.perf_counter()
    ok = await run(n)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {"n": n, "ok": ok, "errors": errors, "seconds": round(wall, 3),
            "cpu_s": round(cpu, 3), "us_per_req": round(cpu * 1e6 / n, 1),
            "req_per_s": round(n / wall)}


async def bench_one(client: str, url: str, n: int, concurrency: int,
                    warmup: int) -> dict[str, Any]:
    body = callback_body()
    headers = callback_headers(body)
    if client in ("httpx", "httpx-nosniff"):
        import httpx

        if client == "httpx-nosniff":
            sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

        hx = httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=concurrency))

        def httpx_post() -> Post:
            async def post() -> int:
                resp = await hx.post(url, content=body, headers=headers)
                return resp.status_code
            return post

        try:
            return await _drive(httpx_post, n, concurrency, warmup)
        finally:
            await hx.aclose()
    if client == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            timeout=aiohttp.ClientTimeout(total=10.0))

        def aiohttp_post() -> Post:
            async def post() -> int:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    return resp.status
            return post

        try:
            return await _drive(aiohttp_post, n, concurrency, warmup)
        finally:
            await session.close()
    if client == "aiosonic":
        import aiosonic
        from aiosonic.pools import PoolConfig

        sonic = aiosonic.HTTPClient(connector=aiosonic.TCPConnector(
            pool_configs={":default": PoolConfig(size=concurrency, max_conn_requests=None)}))

        def aiosonic_post() -> Post:
            async def post() -> int:
                resp = await sonic.post(url, data=body, headers=headers)
                await resp.content()
                return int(resp.status_code)
            return post

        try:
            return await _drive(aiosonic_post, n, concurrency, warmup)
        finally:
            await sonic.connector.cleanup()
    if client == "smsgw":
        from gateway.core.targets import TargetPolicy
        from gateway.notify.client import WebhookClient

        ours = WebhookClient(TargetPolicy(["127.0.0.0/8"]), headers["User-Agent"], 10.0,
                             max_answer=65536, max_idle=concurrency)
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items()
                        if k != "User-Agent").encode()

        def smsgw_post() -> Post:
            async def post() -> int:
                return await ours.post(url, lines, body)
            return post

        try:
            return await _drive(smsgw_post, n, concurrency, warmup)
        finally:
            await ours.close()
    if client == "raw":
        from urllib.parse import urlsplit

        from loadtest.loadgen import RawHttp

        path = urlsplit(url).path or "/"
        raws: list[RawHttp] = []

        def raw_post() -> Post:
            raw = RawHttp(url, "bench", 10.0)
            raws.append(raw)

            async def post() -> int:
                status, _ = await raw.request("POST", path, body)
                return status
            return post

        try:
            return await _drive(raw_post, n, concurrency, warmup)
        finally:
            for raw in raws:
                await raw.close()
    raise ValueError(f"unknown client {client!r}")


def run_one(args: argparse.Namespace) -> int:
    try:
        if args.one in ("httpx", "httpx-nosniff"):
            import httpx  # noqa: F401
        elif args.one == "aiohttp":
            import aiohttp  # noqa: F401
        elif args.one == "aiosonic":
            import aiosonic  # noqa: F401
    except ImportError as exc:
        print(json.dumps({"skipped": f"does not import: {exc}"}))
        return 0
    coro = bench_one(args.one, args.url, args.messages, args.concurrency, args.warmup)
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(coro)
    else:
        result = asyncio.run(coro)
    result["version"] = _version(args.one)
    print(json.dumps(result))
    return 0


def _version(client: str) -> str:
    if client in ("raw", "smsgw"):
        return "-"
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(client.partition("-")[0])
    except PackageNotFoundError:
        return "?"


# --- the table ------------------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _connections(receiver: ReceiverProcess) -> int:
    """Connections the receiver has accepted so far (its stats are rewritten each 0.2 s)."""
    time.sleep(0.3)
    return int(receiver.stats().get("connections", 0))


def run_all(args: argparse.Namespace) -> int:
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    levels = [int(c) for c in args.concurrency_levels.split(",") if c.strip()]
    body = callback_body()
    rows: list[dict[str, Any]] = []
    before = yardstick_ms()
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-http-") as tmp:
        receiver = ReceiverProcess(tmp, args=["--signature", "off", "--interval", "0.2"])
        receiver.start()
        try:
            for client in clients:
                for conc in levels:
                    assert receiver.pid is not None
                    r0, c0 = _cpu_s(receiver.pid), _connections(receiver)
                    cmd = [sys.executable, "-m", "loadtest.bench_http_client", "--one", client,
                           "--url", receiver.url, "-n", str(args.messages),
                           "--concurrency", str(conc), "--warmup", str(args.warmup),
                           "--loop", args.loop]
                    out = subprocess.run(cmd, capture_output=True, text=True,
                                         timeout=args.timeout)
                    r1 = _cpu_s(receiver.pid)
                    opened = _connections(receiver) - c0
                    line = out.stdout.strip().splitlines()[-1:] or ["{}"]
                    try:
                        row = json.loads(line[0])
                    except json.JSONDecodeError:
                        row = {"skipped": f"failed: {out.stderr.strip()[-300:]}"}
                    if out.returncode != 0 and "skipped" not in row:
                        row = {"skipped": f"exit {out.returncode}: {out.stderr.strip()[-300:]}"}
                    row.update(client=client, concurrency=conc)
                    if "skipped" not in row:
                        # the receiver also served the warm-up
                        row["receiver_us_per_req"] = round(
                            (r1 - r0) * 1e6 / (args.messages + args.warmup), 1)
                        # more than `conc`: the client closed connections it could keep
                        row["connections"] = opened
                    rows.append(row)
                    if args.progress:
                        print(_row(row), flush=True)
        finally:
            receiver.stop()
    after = yardstick_ms()
    report = {"body_bytes": len(body), "messages": args.messages, "warmup": args.warmup,
              "loop": args.loop, "yardstick_ms": {"before": before, "after": after},
              "rows": rows}
    print(format_table(report))
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 0


def _row(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return f"{r['client']:<14}{r['concurrency']:>6}  skipped: {r['skipped']}"
    errors = sum(r["errors"].values())
    return (f"{r['client']:<14}{r['concurrency']:>6}{r.get('version', ''):>10}"
            f"{r['us_per_req']:>12,.1f}{r['req_per_s']:>12,}"
            f"{r['receiver_us_per_req']:>14,.1f}{r['connections']:>8,}{errors:>8,}")


def format_table(report: dict[str, Any]) -> str:
    y = report["yardstick_ms"]
    lines = [
        f"POST of a {report['body_bytes']}-byte JSON callback, keep-alive, "
        f"{report['messages']:,} requests after {report['warmup']:,} warm-up, {report['loop']}; "
        f"yardstick {y['before']} ms before, {y['after']} ms after (lower is faster)",
        "",
        f"{'client':<14}{'conc.':>6}{'version':>10}{'CPU µs/req':>12}{'req/s':>12}"
        f"{'receiver µs':>14}{'conns':>8}{'errors':>8}",
    ]
    lines += [_row(r) for r in report["rows"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_http_client",
                                     description=__doc__.split("\n\n")[0])
    a = parser.add_argument
    a("-n", "--messages", type=int, default=20_000, help="measured requests per case")
    a("--warmup", type=int, default=1_000)
    a("--concurrency", dest="concurrency_levels", default="16,64",
      help="requests in flight, comma-separated levels")
    a("--clients", default=",".join(CLIENTS))
    a("--loop", choices=("uvloop", "asyncio"), default="uvloop",
      help="event loop of the client (the gateway runs on uvloop)")
    a("--timeout", type=float, default=300.0, help="bound on one case, seconds")
    a("--progress", action="store_true", help="print each row as it is measured")
    a("--json", default=None, metavar="FILE")
    # internal: one client in this process
    a("--one", choices=CLIENTS, help=argparse.SUPPRESS)
    a("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        args.concurrency = int(args.concurrency_levels)
        return run_one(args)
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
