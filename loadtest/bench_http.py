"""Requests/s and server CPU per request of `POST /v1/messages`, beside the floor
that the HTTP stack under it allows:

    python -m loadtest.bench_http [--seconds 10] [--concurrency 32] [--workers 1]
                                  [--targets fastapi,fastapi-model,asgi,protocol,gateway]

Each target runs in its own process(es), and the same load drives each from
another process: `--concurrency` keep-alive connections, one request in flight
on each, for `--seconds` after a short warm-up. The load comes from `wrk` (C,
a few µs per request) when it is installed (`apt-get install wrk`), otherwise
from `loadtest.loadgen.RawHttp` coroutines in one process (`--client raw`).

Targets:
    fastapi        a bare FastAPI app on uvicorn (httptools, uvloop), one POST
                   route that reads the body and returns fixed bytes
    fastapi-model  the same route with the gateway's shape: a pydantic body
                   model (gateway.ingress.http.submit.MessageIn) and a bearer dependency
    asgi           a raw ASGI callable on uvicorn (httptools, uvloop)
    protocol       an asyncio.Protocol on httptools with a fixed answer:
                   no ASGI, no task per request
    gateway        `smsgw run` (loadtest.harness, embedded Redis) with an
                   `smsgw smsc-sim` process, every request a new message
                   (distinct +86138… numbers, --class), so it is accepted,
                   persisted and submitted; the simulator is down with --hold

Server CPU is user + system from /proc of the server's processes (for the
gateway: its supervisor and workers; Redis, the simulator and the load
generator are printed apart) over the measured window, divided by the
requests answered in it. The machine's speed moves (docs/benchmarks.md), so
`loadtest.yardstick` runs before and after and is printed beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.core.processes import terminate
from gateway.ingress.http.submit import MessageIn
from gateway.run.embedded_redis import free_port
from loadtest.loadgen import (
    DEFAULT_API_KEY,
    HttpError,
    Options,
    RawHttp,
    Run,
    process_groups,
    usage,
)
from loadtest.yardstick import yardstick_ms

TARGETS = ("fastapi", "fastapi-model", "asgi", "protocol", "gateway")
PATH = "/v1/messages"
ANSWER = b'{"id":"0190a0b1c2d3e4f5a6b7c8d9e0f1","status":"accepted","parts":1,"encoding":"gsm7"}'
TEXTS = {"otp": "Your verification code is {code}. Ref {ref}",
         "transactional": "Your order has shipped. Ref {ref}",
         "marketing": "Double 11: 50% off everything until midnight. Ref {ref}"}


def body_for(n: int, msg_class: str) -> bytes:
    """The n-th request's body: a new recipient each time, as loadgen's single mode."""
    text = TEXTS[msg_class].format(code=f"{(n * 7919) % 1000000:06d}", ref=f"{n:x}")
    return orjson.dumps({"to": f"+86138{n:08d}", "from": "SMSGW", "text": text,
                         "class": msg_class, "client_ref": str(n)})


# --- the floor: servers with nothing behind the route ----------------------------------


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


_bearer = HTTPBearer(auto_error=False)


async def _auth(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> str:
    return credentials.credentials if credentials else ""


def fastapi_app(with_model: bool) -> FastAPI:
    app = FastAPI()
    if with_model:
        @app.post(PATH, status_code=202)
        async def submit_model(body: MessageIn, key: Annotated[str, Depends(_auth)]) -> Response:
            return Response(ANSWER, status_code=202, media_type="application/json")
    else:
        @app.post(PATH, status_code=202)
        async def submit(request: Request) -> Response:
            await request.body()
            return Response(ANSWER, status_code=202, media_type="application/json")
    return app


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    more = True
    while more:
        event = await receive()
        more = event.get("more_body", False)
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(ANSWER)).encode())]})
    await send({"type": "http.response.body", "body": ANSWER})


class FixedAnswer(asyncio.Protocol):
    """HTTP/1.1 keep-alive on httptools, answering every request at once from
    the parser's callback: what a server costs without ASGI or a task."""

    RESPONSE = (b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER)

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        import httptools

        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.transport.write(self.RESPONSE)


async def _serve_floor(kind: str, port: int) -> None:
    sock = _listen(port)
    if kind == "protocol":
        server = await asyncio.get_running_loop().create_server(FixedAnswer, sock=sock)
        await server.serve_forever()
        return
    import uvicorn

    app = asgi_app if kind == "asgi" else fastapi_app(kind == "fastapi-model")
    config = uvicorn.Config(app, http="httptools", loop="uvloop", access_log=False,
                            log_config=None, lifespan="off")
    await uvicorn.Server(config).serve(sockets=[sock])


def serve_main(kind: str, port: int) -> None:
    import uvloop

    uvloop.run(_serve_floor(kind, port))


def start_floor(kind: str, port: int, workers: int) -> list[subprocess.Popen[bytes]]:
    procs = [subprocess.Popen([sys.executable, "-m", "loadtest.bench_http", "serve", kind,
                               "--port", str(port)]) for _ in range(workers)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"{kind} server exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return procs
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{kind} server not listening in 30 s")


# --- the load ------------------------------------------------------------------------

_WRK_SCRIPT = """
counter, offset, tid = 0, 0, 0
function setup(thread)
  thread:set("offset", tid * 40000000 + %(base)d)
  tid = tid + 1
end
local texts = {
  otp = "Your verification code is %%06d. Ref %%x",
  transactional = "Your order has shipped. Ref %%x",
  marketing = "Double 11: 50%%%% off everything until midnight. Ref %%x",
}
local cls = "%(cls)s"
local headers = {["Authorization"] = "Bearer %(key)s",
                 ["Content-Type"] = "application/json"}
function request()
  local n = offset + counter
  counter = counter + 1
  local text
  if cls == "otp" then text = string.format(texts.otp, (n * 7919) %% 1000000, n)
  else text = string.format(texts[cls], n) end
  local body = string.format(
    '{"to":"+86138%%08d","from":"SMSGW","text":"%%s","class":"%%s","client_ref":"%%d"}',
    n, text, cls, n)
  return wrk.format("POST", "%(path)s", headers, body)
end
function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_JSON {"requests": %%d, "duration_us": %%d, "status_errors": %%d, ' ..
    '"socket_errors": %%d, "p50_us": %%d, "p99_us": %%d}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def drive_wrk(port: int, seconds: float, concurrency: int, msg_class: str, base: int,
              workdir: Path) -> dict[str, Any]:
    script = workdir / f"bench-{base}.lua"
    script.write_text(_WRK_SCRIPT % {"base": base, "cls": msg_class, "key": DEFAULT_API_KEY,
                                     "path": PATH})
    proc = subprocess.Popen(
        ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{max(1, round(seconds))}s",
         "--timeout", "30s", "-s", str(script), f"http://127.0.0.1:{port}{PATH}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    cpu0 = _children_cpu()
    out, _ = proc.communicate(timeout=seconds + 60)
    cpu = _children_cpu() - cpu0
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("BENCH_JSON "):
            result = dict(json.loads(line.removeprefix("BENCH_JSON ")))
            result["seconds"] = result.pop("duration_us") / 1e6
            result["client_cpu_s"] = cpu
            return result
    raise RuntimeError(f"wrk printed no result:\n{out.decode(errors='replace')[-2000:]}")


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


async def _drive_raw(port: int, seconds: float, concurrency: int, msg_class: str,
                     base: int) -> dict[str, Any]:
    counter = iter(range(base, base + 40_000_000))
    results = {"requests": 0, "status_errors": 0, "socket_errors": 0}
    latencies: list[float] = []
    t0 = time.monotonic()
    deadline = t0 + seconds

    async def worker() -> None:
        client = RawHttp(f"http://127.0.0.1:{port}", DEFAULT_API_KEY, 30.0)
        try:
            while time.monotonic() < deadline:
                body = body_for(next(counter), msg_class)
                start = time.monotonic()
                try:
                    status, _ = await client.request("POST", PATH, body)
                except HttpError:
                    results["socket_errors"] += 1
                    continue
                latencies.append(time.monotonic() - start)
                results["requests"] += 1
                if status >= 300:
                    results["status_errors"] += 1
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    latencies.sort()
    pick = lambda q: round(latencies[int(q * (len(latencies) - 1))] * 1e6) if latencies else 0  # noqa: E731
    return {**results, "seconds": time.monotonic() - t0, "p50_us": pick(0.5),
            "p99_us": pick(0.99)}


def drive_main(port: int, seconds: float, concurrency: int, msg_class: str, base: int) -> None:
    import uvloop

    t0 = time.process_time()
    result = uvloop.run(_drive_raw(port, seconds, concurrency, msg_class, base))
    result["client_cpu_s"] = time.process_time() - t0
    print("BENCH_JSON " + json.dumps(result), flush=True)


def drive_raw(port: int, seconds: float, concurrency: int, msg_class: str,
              base: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "loadtest.bench_http", "drive", "--port", str(port),
         "--seconds", str(seconds), "--concurrency", str(concurrency), "--class", msg_class,
         "--base", str(base)],
        capture_output=True, timeout=seconds + 120, check=True,
    ).stdout.decode()
    line = next(x for x in out.splitlines() if x.startswith("BENCH_JSON "))
    return dict(json.loads(line.removeprefix("BENCH_JSON ")))


# --- one target ----------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.base = 0  # recipients never repeat across targets and rounds

    def drive(self, port: int, seconds: float) -> dict[str, Any]:
        a = self.args
        base, self.base = self.base, self.base + 10_000_000
        if a.client == "wrk":
            return drive_wrk(port, seconds, a.concurrency, a.msg_class, base, self.workdir)
        return drive_raw(port, seconds, a.concurrency, a.msg_class, base)

    def measure(self, port: int, groups: dict[str, list[int]],
                profile_pid: int | None = None) -> dict[str, Any]:
        """Warm up, then one measured window: the load's figures and each group's
        CPU over it (and a py-spy profile of `profile_pid` with --profile)."""
        self.drive(port, self.args.warmup)
        profiler = self.start_profiler(profile_pid)
        before = usage(groups)
        result = self.drive(port, self.args.seconds)
        after = usage(groups)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(60)
        n = result["requests"]
        cpu = {name: after[name]["cpu_s"] - before.get(name, {}).get("cpu_s", 0.0)
               for name in after}
        result["rps"] = n / result["seconds"] if result["seconds"] else 0.0
        result["cpu_us"] = {name: s * 1e6 / n if n else 0.0 for name, s in cpu.items()}
        result["cpu_us"]["load generator"] = result["client_cpu_s"] * 1e6 / n if n else 0.0
        return result

    def start_profiler(self, pid: int | None) -> subprocess.Popen[bytes] | None:
        if not self.args.profile or pid is None:
            return None
        pyspy = Path(sys.executable).with_name("py-spy")
        args = [str(pyspy if pyspy.exists() else "py-spy"), "record", "--native", "-r", "200",
                "-f", "raw", "-o", self.args.profile, "-p", str(pid)]
        if self.args.workers > 1:
            args.append("--subprocesses")
        profiler = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)  # py-spy attaches before the window opens
        return profiler

    def floor(self, kind: str) -> dict[str, Any]:
        port = free_port()
        procs = start_floor(kind, port, self.args.workers)
        try:
            return self.measure(port, {"server": [p.pid for p in procs]})
        finally:
            for p in procs:
                terminate(p, 10)

    def gateway(self) -> dict[str, Any]:
        a = self.args
        opts = Options(workers=a.workers, binds=a.binds, hold=a.hold, log_level="warning")
        run = Run(opts, self.workdir / f"gateway-{self.base}")
        run.start()
        try:
            assert run.gateway is not None and run.sim is not None
            groups = process_groups(run.gateway_pid, run.sim.pid)
            groups.pop("loadgen")  # this process only waits; the load has its own
            submitted0 = run.sim.stats().get("accepted", 0)
            result = self.measure(run.gateway.http_port, groups, run.gateway_pid)
            result["submitted_in_window"] = run.sim.stats().get("accepted", 0) - submitted0
            return result
        finally:
            run.stop()


def format_row(name: str, r: dict[str, Any]) -> str:
    cpu = r["cpu_us"]
    server = cpu.get("server", cpu.get("gateway", 0.0))
    others = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items() if k not in ("server", "gateway"))
    errors = r["status_errors"] + r["socket_errors"]
    return (f"{name:<14}{r['rps']:>10,.0f}{server:>12.1f}{r['p50_us'] / 1000:>9.2f}"
            f"{r['p99_us'] / 1000:>9.2f}{errors:>8}   {others}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="(internal) run one floor server")
    s.add_argument("kind", choices=[t for t in TARGETS if t != "gateway"])
    s.add_argument("--port", type=int, required=True)
    d = sub.add_parser("drive", help="(internal) the RawHttp load, printing a JSON line")
    d.add_argument("--port", type=int, required=True)
    d.add_argument("--seconds", type=float, required=True)
    d.add_argument("--concurrency", type=int, required=True)
    d.add_argument("--class", dest="msg_class", default="transactional")
    d.add_argument("--base", type=int, default=0)
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--seconds", type=float, default=10.0, help="measured window per target")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--workers", type=int, default=1,
                   help="server processes per target (the gateway's --workers)")
    p.add_argument("--class", dest="msg_class", default="transactional",
                   choices=sorted(TEXTS), help="the messages' class (gateway target)")
    p.add_argument("--client", choices=("auto", "wrk", "raw"), default="auto")
    p.add_argument("--binds", type=int, default=4, help="the gateway's connector binds")
    p.add_argument("--hold", action="store_true",
                   help="keep the simulator down: the gateway only accepts and queues")
    p.add_argument("--profile", default=None, metavar="FILE",
                   help="py-spy --native raw profile of the gateway over its window")
    p.add_argument("--json", default=None, metavar="FILE")
    a = p.parse_args()
    if a.command == "serve":
        serve_main(a.kind, a.port)
        return
    if a.command == "drive":
        drive_main(a.port, a.seconds, a.concurrency, a.msg_class, a.base)
        return
    if a.client == "auto":
        a.client = "wrk" if shutil.which("wrk") else "raw"
    targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    for t in targets:
        if t not in TARGETS:
            p.error(f"unknown target {t!r}; choose from {', '.join(TARGETS)}")

    report: dict[str, Any] = {"yardstick_ms_before": yardstick_ms(), "client": a.client,
                              "concurrency": a.concurrency, "workers": a.workers,
                              "class": a.msg_class, "load_before": os.getloadavg()}
    print(f"yardstick {report['yardstick_ms_before']} ms; load: {a.client}, {a.concurrency} "
          f"connections, {a.seconds:g} s per target; {a.workers} server process(es)")
    print(f"{'target':<14}{'req/s':>10}{'CPU µs/req':>12}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'errors':>8}   other CPU µs/req")
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-http-") as tmp:
        bench = Bench(a, Path(tmp))
        for target in targets:
            result = bench.gateway() if target == "gateway" else bench.floor(target)
            report[target] = result
            print(format_row(target, result), flush=True)
            if target == "gateway":
                print(f"{'':<14}submitted at the SMSC in the window: "
                      f"{result['submitted_in_window']:,}")
    report["yardstick_ms_after"] = yardstick_ms()
    print(f"yardstick {report['yardstick_ms_after']} ms")
    if a.json:
        Path(a.json).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
