"""`smsgw loadtest`: load generator, end-to-end audit and report.

By default it starts everything itself on loopback ports picked at run time:
an `smsgw smsc-sim` process with the options given in ``--sim`` (and
``--record`` on, for the audit), then `smsgw run` (embedded Redis) pointed at
it. With ``--url``/``--api-key`` it drives a gateway that is already running
(give ``--redis-url`` for a full audit, ``--sim-stats``/``--sim-record`` for
the SMSC side).

Messages go over HTTP: batch mode (``POST /v1/messages/batch``, one template,
a unique token per recipient in ``vars``) for bulk classes, single mode
(``POST /v1/messages``) for the classes in ``--single-classes`` (OTP by
default) and for everything when ``--mode single`` or when the gateway has no
batch endpoint (``--mode auto`` falls back and says so). Minority classes are
spread evenly through the burst. ``--rate`` paces messages per second; 0 is
flat out.

With ``--callbacks single|batched`` every message carries a ``callback_url``
of a webhook receiver we start (`loadtest.receiver`, its own process), and the
run waits until every accepted message's final callback has arrived there (or
the deadline passes, or nothing arrives for ``--callback-quiet`` seconds); the
figures are counted at the receiver, where a user counts them: end-to-end
messages/s = finals received / (last final callback received − first accept).
``batched`` starts the gateway with the demo account's callback batching on
(``--callback-batch-size``, ``--callback-linger``).

Every loop is bounded in count and time (``--timeout``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway.core.template import Template
from loadtest import audit as audit_mod
from loadtest.harness import GatewayProcess, ReceiverProcess, SimulatorProcess, command_stats
from loadtest.receiver import FINAL as CALLBACK_FINAL
from loadtest.yardstick import yardstick_ms

DEFAULT_API_KEY = "demo-key"  # the demo account of config/gateway.toml
DEFAULT_CALLBACK_SECRET = "demo-secret"  # and its callback_secret
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MARKETING_TEXT = "Double 11: 50% off everything until midnight. Ref {{ref}}"
TEXTS = {
    "otp": "Your verification code is {{code}}. Ref {{ref}}",
    "transactional": "Your order has shipped. Ref {{ref}}",
    "marketing": MARKETING_TEXT,
}
_TEMPLATES = {cls: Template(text) for cls, text in TEXTS.items()}


# --- plan --------------------------------------------------------------------


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for item in text.split(","):
        if item.strip():
            cls, _, ratio = item.partition(":")
            mix[cls.strip()] = float(ratio)
    total = sum(mix.values())
    if not mix or total <= 0:
        raise ValueError("--mix needs CLASS:RATIO pairs")
    return {k: v / total for k, v in mix.items()}


def class_sequence(n: int, mix: dict[str, float]) -> list[str]:
    """n classes with the mix's counts, minority classes spread evenly (so 1,000
    OTPs land once every ~1,000 marketing messages, not in one clump)."""
    counts = {cls: round(n * r) for cls, r in mix.items()}
    major = max(mix, key=lambda c: mix[c])
    counts[major] += n - sum(counts.values())
    seq = [major] * n
    for cls, count in counts.items():
        if cls == major or count <= 0:
            continue
        step = n / count
        for k in range(count):
            pos = int(step * k + step / 2)
            while seq[pos] != major:
                pos = (pos + 1) % n
            seq[pos] = cls
    return seq


@dataclass
class Unit:
    kind: str  # "batch" | "single"
    msg_class: str
    indices: list[int]


def build_units(classes: list[str], mode: str, batch_size: int,
                single_classes: set[str]) -> list[Unit]:
    units: list[Unit] = []
    current: Unit | None = None
    for i, cls in enumerate(classes):
        if mode == "single" or cls in single_classes:
            units.append(Unit("single", cls, [i]))
            continue
        if current is None or current.msg_class != cls or len(current.indices) >= batch_size:
            current = Unit("batch", cls, [])
            units.append(current)
        current.indices.append(i)
    return units


def recipient(i: int) -> str:
    return f"+86138{i:08d}"  # China Mobile numbers, one per message


# --- a small HTTP/1.1 keep-alive client ----------------------------------------
# httpx costs ~0.3 ms of CPU per request; on a 2-core box shared with the
# gateway that would be the load generator measuring itself.


class HttpError(Exception):
    pass


class RawHttp:
    def __init__(self, url: str, api_key: str, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.auth = f"Bearer {api_key}"
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=1 << 24), self.timeout
        )

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: {self.auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            if self._writer is None:  # a refused connection is an HttpError too
                await self._connect()
            assert self._reader is not None and self._writer is not None
            self._writer.write(head + body)
            raw = await asyncio.wait_for(self._reader.readuntil(b"\r\n\r\n"), self.timeout)
            status = int(raw[9:12])
            length = 0
            for line in raw.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                elif name.strip().lower() == b"transfer-encoding":
                    raise HttpError("chunked responses are not supported")
            data = await asyncio.wait_for(self._reader.readexactly(length), self.timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            await self.close()
            raise HttpError(f"{method} {path}: {exc!r}") from exc
        return status, data


# --- sending -------------------------------------------------------------------


@dataclass
class SendResult:
    mode: str
    ids: list[str | None]
    classes: list[str]
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    started: float = 0.0  # wall clock
    finished: float = 0.0
    requests: int = 0
    notes: list[str] = field(default_factory=list)


class Sender:
    def __init__(self, url: str, api_key: str, run_tag: str, *, mode: str, batch_size: int,
                 single_classes: set[str], concurrency: int, rate: float,
                 timeout: float, callback_url: str | None = None) -> None:
        self.url, self.api_key, self.run_tag = url, api_key, run_tag
        self.mode, self.batch_size, self.single_classes = mode, batch_size, single_classes
        self.concurrency, self.rate, self.timeout = concurrency, rate, timeout
        self.callback_url = callback_url
        self._callback = {"callback_url": callback_url} if callback_url else {}

    def _vars(self, i: int, cls: str) -> dict[str, str]:
        v = {"ref": f"{self.run_tag}{i:x}"}
        if cls == "otp":
            v["code"] = f"{(i * 7919) % 1000000:06d}"
        return v

    def _text(self, i: int, cls: str) -> str:
        return _TEMPLATES.get(cls, _TEMPLATES["marketing"]).render(self._vars(i, cls))

    async def probe_batch(self) -> bool:
        """Does the gateway have POST /v1/messages/batch? (an empty batch: 4xx but not 404)"""
        client = RawHttp(self.url, self.api_key, self.timeout)
        try:
            status, _ = await client.request("POST", "/v1/messages/batch", b"{}")
        finally:
            await client.close()
        return status not in (404, 405)

    async def run(self, classes: list[str]) -> SendResult:
        mode = self.mode
        notes: list[str] = []
        if mode in ("auto", "batch"):
            if await self.probe_batch():
                mode = "batch"
            elif self.mode == "batch":
                raise SystemExit("the gateway has no POST /v1/messages/batch")
            else:
                mode = "single"
                notes.append("POST /v1/messages/batch not available: single mode used")
        units = build_units(classes, mode, self.batch_size, self.single_classes)
        result = SendResult(mode, [None] * len(classes), classes, notes=notes)
        queue: Iterator[tuple[int, Unit]] = iter(self._positions(units))
        result.started = time.time()
        t0 = time.monotonic()
        deadline = t0 + self.timeout

        async def worker() -> None:
            client = RawHttp(self.url, self.api_key, min(60.0, self.timeout))
            try:
                for before, unit in queue:
                    if time.monotonic() > deadline:
                        result.errors["send_timeout"] += len(unit.indices)
                        continue
                    if self.rate > 0:
                        wait = t0 + before / self.rate - time.monotonic()
                        if wait > 0:
                            await asyncio.sleep(wait)
                    await self._send_unit(client, unit, result)
            finally:
                await client.close()

        n_workers = self.concurrency if mode == "single" else min(self.concurrency, 8)
        await asyncio.gather(*(worker() for _ in range(n_workers)))
        result.finished = time.time()
        return result

    @staticmethod
    def _positions(units: list[Unit]) -> Iterator[tuple[int, Unit]]:
        before = 0
        for unit in units:
            yield before, unit
            before += len(unit.indices)

    async def _send_unit(self, client: RawHttp, unit: Unit, result: SendResult) -> None:
        result.requests += 1
        try:
            if unit.kind == "single":
                i = unit.indices[0]
                body = orjson.dumps({"to": recipient(i), "from": "SMSGW",
                                     "text": self._text(i, unit.msg_class),
                                     "class": unit.msg_class, "client_ref": str(i),
                                     **self._callback})
                status, data = await client.request("POST", "/v1/messages", body)
                if status == 202:
                    result.ids[i] = orjson.loads(data)["id"]
                    result.accepted += 1
                else:
                    result.rejected[_code(status, data)] += 1
                return
            body = orjson.dumps({
                "from": "SMSGW", "text": TEXTS.get(unit.msg_class, MARKETING_TEXT),
                "class": unit.msg_class, **self._callback,
                "messages": [{"to": recipient(i), "vars": self._vars(i, unit.msg_class),
                              "client_ref": str(i)} for i in unit.indices],
            })
            status, data = await client.request("POST", "/v1/messages/batch", body)
            if status != 202:
                result.rejected[_code(status, data)] += len(unit.indices)
                return
            reply = orjson.loads(data)
            for item in reply.get("accepted", []):
                result.ids[unit.indices[item["index"]]] = item["id"]
                result.accepted += 1
            for item in reply.get("rejected", []):
                result.rejected[str(item.get("code", "rejected"))] += 1
        except HttpError as exc:
            result.errors[type(exc.__cause__).__name__ if exc.__cause__ else "http"] += len(
                unit.indices)


def _code(status: int, data: bytes) -> str:
    try:
        return f"{status} {orjson.loads(data).get('code', '')}".strip()
    except orjson.JSONDecodeError:
        return str(status)


# --- reading back what happened ---------------------------------------------------


async def observe_redis(redis_url: str, ids: list[str], chunk: int = 2000) -> dict[str, Any]:
    from gateway.store import Store

    store = Store.from_url(redis_url)
    out: dict[str, audit_mod.Observed] = {}
    try:
        for k in range(0, len(ids), chunk):
            part = ids[k:k + chunk]
            for mid, state in zip(part, await store.get_many(part), strict=True):
                if state is not None:
                    out[mid] = audit_mod.observed_from_state(state)
    finally:
        await store.close()
    return out


async def redis_commands(redis_url: str) -> dict[str, tuple[int, int]]:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(redis_url)
    try:
        return await command_stats(r)
    finally:
        await r.aclose()


def command_profile(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
                    messages: int, redis_cpu_s: float | None) -> dict[str, Any]:
    """Redis's time inside each command per message, beside its whole CPU per message
    (the rest is reading, parsing, replying and the AOF)."""
    per: dict[str, dict[str, float]] = {}
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0))
        if calls > c0:
            per[name] = {"calls_per_msg": round((calls - c0) / messages, 3),
                         "us_per_msg": round((usec - u0) / messages, 2)}
    top = dict(sorted(per.items(), key=lambda kv: -kv[1]["us_per_msg"]))
    out: dict[str, Any] = {"commands": top}
    if redis_cpu_s is not None:
        out["cpu_us_per_msg"] = round(redis_cpu_s * 1e6 / messages, 2)
    return out


async def observe_http(url: str, api_key: str, ids: list[str],
                       concurrency: int = 16) -> dict[str, Any]:
    out: dict[str, audit_mod.Observed] = {}
    it = iter(ids)

    async def worker() -> None:
        client = RawHttp(url, api_key, 30.0)
        try:
            for mid in it:
                try:
                    status, data = await client.request("GET", f"/v1/messages/{mid}")
                except HttpError:
                    continue
                if status == 200:
                    out[mid] = audit_mod.observed_from_json(orjson.loads(data))
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


# --- processes: CPU seconds and peak RSS from /proc ------------------------------------


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            kids.append(int(entry))
    return kids


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def proc_usage(pid: int) -> dict[str, float]:
    """CPU seconds (user+system) and peak/current RSS in MB of one process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read().rpartition(")")[2].split()
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return {}
    return {
        "cpu_s": (int(fields[11]) + int(fields[12])) / CLK_TCK,
        "peak_rss_mb": int(status.get("VmHWM", "0 kB").split()[0]) / 1024,
        "rss_mb": int(status.get("VmRSS", "0 kB").split()[0]) / 1024,
    }


def process_groups(gateway_pid: int | None, sim_pid: int | None,
                   receiver_pid: int | None = None) -> dict[str, list[int]]:
    """The gateway (its supervisor and workers), its embedded redis-server, the
    simulator, the webhook receiver."""
    groups: dict[str, list[int]] = {"gateway": [], "redis": [], "simulator": []}
    if gateway_pid:
        groups["gateway"].append(gateway_pid)
        for kid in _children(gateway_pid):
            comm = _comm(kid)
            if comm.startswith("redis-server"):
                groups["redis"].append(kid)
            elif kid not in (sim_pid, receiver_pid) and "py-spy" not in comm:
                groups["gateway"].append(kid)
    if sim_pid:
        groups["simulator"].append(sim_pid)
    if receiver_pid:
        groups["receiver"] = [receiver_pid]
    groups["loadgen"] = [os.getpid()]
    return groups


def usage(groups: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, pids in groups.items():
        parts = [proc_usage(p) for p in pids]
        parts = [p for p in parts if p]
        if parts:
            out[name] = {
                "cpu_s": sum(p["cpu_s"] for p in parts),
                "peak_rss_mb": sum(p["peak_rss_mb"] for p in parts),
                "rss_mb": sum(p["rss_mb"] for p in parts),
            }
    return out


def loadavg() -> str:
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def redis_url_of(gateway_pid: int) -> str | None:
    """The embedded Redis of a gateway we started: its redis-server child's port
    (redis rewrites its process title to `redis-server 127.0.0.1:PORT`)."""
    for kid in _children(gateway_pid):
        if _comm(kid).startswith("redis-server"):
            try:
                with open(f"/proc/{kid}/cmdline", "rb") as f:
                    title = f.read().decode(errors="replace").replace("\0", " ")
            except OSError:
                continue
            m = re.search(r"--port (\d+)", title) or re.search(r":(\d+)", title)
            if m:
                return f"redis://127.0.0.1:{m.group(1)}/0"
    return None


# --- the run -----------------------------------------------------------------------


@dataclass
class Options:
    messages: int = 1000
    mix: str = "marketing:1"
    mode: str = "auto"
    batch_size: int = 1000
    single_classes: str = "otp"
    concurrency: int = 32
    rate: float = 0.0
    timeout: float = 300.0
    settle: float = 6.0  # longer than the longest throttle pause (5 s)
    final_wait: float = 30.0
    url: str | None = None
    api_key: str = DEFAULT_API_KEY
    redis_url: str | None = None
    sim_stats: str | None = None
    sim_record: str | None = None
    sim: str = ""
    hold: bool = False
    binds: int = 4
    window: int = 256
    workers: int = 1
    log_level: str = "warning"
    gateway_env: list[str] = field(default_factory=list)
    sample: int = 10_000
    workdir: str | None = None
    profile: str | None = None
    json: str | None = None
    callbacks: str = "none"  # "none" | "single" | "batched"
    callback_batch_size: int = 500
    callback_linger: float = 0.1
    callback_secret: str = DEFAULT_CALLBACK_SECRET
    # The gateway's sender before the contract signed the body alone: accept both
    # forms (and count which one came) until it signs "<timestamp>.<body>".
    callback_signature: str = "either"
    callback_quiet: float = 30.0
    # Test hook: called after sending, before the audit, with (run, sent, sender).
    before_audit: Any = None
    # Fault hook (loadtest.bench_chaos): run in a thread from the start of the
    # burst with (run,), joined (at most `timeout` s) before the audit.
    during_send: Any = None


class Run:
    def __init__(self, opts: Options, workdir: Path) -> None:
        self.opts = opts
        self.workdir = workdir
        self.sim: SimulatorProcess | None = None
        self.gateway: GatewayProcess | None = None
        self.receiver: ReceiverProcess | None = None
        self.profiler: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        o = self.opts
        if o.callbacks != "none":
            self.receiver = ReceiverProcess(self.workdir, secret=o.callback_secret,
                                            args=["--signature", o.callback_signature])
            self.receiver.start()
        if o.url:
            return
        sim_args = shlex.split(o.sim) + (["--start-down"] if o.hold else [])
        self.sim = SimulatorProcess(self.workdir, sim_args, record=True)
        self.sim.start()
        env = {
            "SMSGW_SIMULATOR__ENABLED": "false",
            "SMSGW_CONNECTORS__SIM__BINDS": str(o.binds),
            "SMSGW_CONNECTORS__SIM__WINDOW": str(o.window),
            "SMSGW_LOG__LEVEL": o.log_level,
        }
        if o.callbacks == "batched":
            env["SMSGW_ACCOUNTS__DEMO__CALLBACK_BATCH_SIZE"] = str(o.callback_batch_size)
            env["SMSGW_ACCOUNTS__DEMO__CALLBACK_BATCH_LINGER"] = str(o.callback_linger)
        for item in o.gateway_env:
            k, _, v = item.partition("=")
            env[k] = v
        self.gateway = GatewayProcess(self.workdir, env=env, workers=o.workers,
                                      sim_port=self.sim.port)
        self.gateway.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the connector binds after /readyz
            if o.hold or self.sim.stats().get("bound_now", 0) >= min(o.binds, 1) * o.workers:
                break
            time.sleep(0.1)

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        if self.sim is not None:
            self.sim.stop()
        if self.receiver is not None:
            self.receiver.stop()

    @property
    def url(self) -> str:
        if self.opts.url:
            return self.opts.url.rstrip("/")
        assert self.gateway is not None
        return self.gateway.base_url

    @property
    def gateway_pid(self) -> int | None:
        if self.gateway is not None and self.gateway.process is not None:
            return self.gateway.process.pid
        return None

    def sim_stats(self) -> dict[str, Any]:
        if self.sim is not None:
            return self.sim.stats()
        if self.opts.sim_stats:
            return dict(orjson.loads(Path(self.opts.sim_stats).read_bytes()))
        return {}

    def start_profiler(self) -> None:
        pid = self.gateway_pid
        if not self.opts.profile or pid is None:
            return
        pyspy = Path(sys.executable).with_name("py-spy")
        args = [str(pyspy if pyspy.exists() else "py-spy"), "record", "-p", str(pid), "-f", "raw",
                "-o", self.opts.profile, "-r", "50", "--nonblocking"]
        if self.opts.workers > 1:
            args.append("--subprocesses")
        self.profiler = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)

    def stop_profiler(self) -> None:
        if self.profiler is not None:
            self.profiler.send_signal(signal.SIGINT)
            try:
                self.profiler.wait(30)
            except subprocess.TimeoutExpired:
                self.profiler.kill()
            self.profiler = None

    def wait_settled(self, expected: int, deadline: float) -> None:
        """Until the simulator has seen a receipt acknowledged for every message
        and nothing moves for `settle` seconds (or the deadline)."""
        if self.sim is None and not self.opts.sim_stats:
            time.sleep(self.opts.settle)
            return
        last: tuple[Any, ...] = ()
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            s = self.sim_stats()
            now = (s.get("submit_sm"), s.get("receipts_acked"), s.get("receipts_sent"))
            if now != last or (self.opts.hold and not s.get("submit_sm")):
                last, quiet_since = now, time.monotonic()
            done = (s.get("receipts_acked", 0) + s.get("receipts_dropped", 0)
                    >= expected and s.get("pending_receipts", 1) == 0)
            if done or time.monotonic() - quiet_since >= self.opts.settle:
                return
            time.sleep(0.25)

    def wait_callbacks(self, expected: int, deadline: float) -> str:
        """Until the receiver has a final callback for `expected` messages, or nothing
        reached it for `callback_quiet` seconds, or the deadline; says which."""
        assert self.receiver is not None
        last: tuple[Any, ...] = ()
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            s = self.receiver.stats()
            if s.get("finals", 0) >= expected:
                return "all final callbacks received"
            now = (s.get("requests"), s.get("events"))
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= self.opts.callback_quiet:
                return f"no callback for {self.opts.callback_quiet:g} s"
            time.sleep(0.25)
        return "deadline passed"


def _rate(count: float, seconds: float | None) -> float | None:
    return round(count / seconds, 1) if seconds and seconds > 0 else None


async def observe(run: Run, ids: list[str], classes_by_id: dict[str, str],
                  deadline: float, redis_url: str | None,
                  ) -> tuple[dict[str, Any], list[str], str]:
    """What the gateway says of the accepted ids: (observations, the ids audited
    — every accepted one, or the sample — and how they were read). An audited id
    the gateway no longer knows has no observation and counts as lost."""
    o = run.opts
    if redis_url:
        observed = await observe_redis(redis_url, ids)
        # Re-read those not final yet until they are or the deadline passes.
        pending = [m for m, ob in observed.items() if ob.status not in audit_mod.FINAL]
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            again = await observe_redis(redis_url, pending)
            observed.update(again)
            pending = [m for m in pending if again.get(m) and again[m].status
                       not in audit_mod.FINAL]
        return observed, ids, f"all {len(ids):,} messages read from Redis (gateway.store)"
    if len(ids) <= o.sample:
        chosen = ids
        how = f"all {len(ids):,} messages read with GET /v1/messages/{{id}}"
    else:
        step = len(ids) / o.sample
        chosen = sorted({ids[int(k * step)] for k in range(o.sample)}
                        | {m for m in ids if classes_by_id.get(m) != "marketing"})
        how = (f"a sample of {len(chosen):,} of {len(ids):,} messages (every minority-class "
               f"message plus an even spread) read with GET /v1/messages/{{id}}; the lost "
               f"count covers the sample only")
    observed = await observe_http(run.url, o.api_key, chosen)
    pending = [m for m, ob in observed.items() if ob.status not in audit_mod.FINAL]
    while pending and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        again = await observe_http(run.url, o.api_key, pending)
        observed.update(again)
        pending = [m for m in pending if again.get(m) and again[m].status not in audit_mod.FINAL]
    return observed, chosen, how


def execute(opts: Options) -> dict[str, Any]:
    mix = parse_mix(opts.mix)
    classes = class_sequence(opts.messages, mix)
    run_tag = os.urandom(3).hex()
    tmp = None
    if opts.workdir:
        workdir = Path(opts.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="smsgw-loadtest-")
        workdir = Path(tmp.name)
    run = Run(opts, workdir)
    report: dict[str, Any] = {
        "messages": opts.messages, "mix": mix, "sim_options": opts.sim,
        "load_before": loadavg(), "nproc": os.cpu_count(),
        "yardstick_ms": {"before": yardstick_ms()},
    }
    try:
        run.start()
        groups = process_groups(run.gateway_pid, run.sim.pid if run.sim else None,
                                run.receiver.pid if run.receiver else None)
        before = usage(groups)
        redis_url = opts.redis_url or (redis_url_of(run.gateway_pid) if run.gateway_pid else None)
        commands_before = _run_async(redis_commands(redis_url)) if redis_url else {}
        run.start_profiler()
        sender = Sender(run.url, opts.api_key, run_tag, mode=opts.mode,
                        batch_size=opts.batch_size,
                        single_classes={c for c in opts.single_classes.split(",") if c},
                        concurrency=opts.concurrency, rate=opts.rate, timeout=opts.timeout,
                        callback_url=run.receiver.url if run.receiver else None)
        deadline = time.monotonic() + opts.timeout
        fault = None
        if opts.during_send is not None:
            fault = threading.Thread(target=opts.during_send, args=(run,), daemon=True)
            fault.start()
        sent = _run_async(sender.run(classes))
        if fault is not None:
            fault.join(max(0.0, deadline - time.monotonic()))
            # A fault may have restarted the gateway, and its Redis on another port.
            if not opts.redis_url and run.gateway_pid:
                redis_url = redis_url_of(run.gateway_pid) or redis_url
        if opts.hold and run.sim is not None:
            run.sim.come_up()  # the backlog drains now: a measure of delivery alone
        ids = [m for m in sent.ids if m is not None]
        classes_by_id = {m: classes[i] for i, m in enumerate(sent.ids) if m is not None}
        run.wait_settled(len(ids), deadline)
        callbacks_end = run.wait_callbacks(len(ids), deadline) if run.receiver else ""
        run.stop_profiler()
        if opts.before_audit is not None:
            opts.before_audit(run, sent, sender)
        deadline = min(deadline, time.monotonic() + opts.final_wait)
        after = usage(groups)
        received: dict[str, list[Any]] = {}
        receiver_stats: dict[str, Any] = {}
        if run.receiver is not None:
            receiver_stats = run.receiver.stop()  # it writes its per-message table on SIGTERM
            received = run.receiver.read_messages()
        commands_after = _run_async(redis_commands(redis_url)) if redis_url else {}
        sim_stats = run.sim_stats()
        report["load_after"] = loadavg()
        observed, audited_ids, how = _run_async(
            observe(run, ids, classes_by_id, deadline, redis_url))
        for mid, ob in observed.items():
            ob.msg_class = ob.msg_class or classes_by_id.get(mid, "")
        record_path = (run.sim.record_path if run.sim is not None
                       else Path(opts.sim_record) if opts.sim_record else None)
        if run.sim is not None:
            run.sim.stop()  # flushes the record
            sim_stats = run.sim.stats() or sim_stats
        record = (audit_mod.SimRecord.load(record_path)
                  if record_path is not None and record_path.exists() else None)
        report["mode"] = sent.mode
        report["notes"] = [*sent.notes, how]
        report["send"] = {
            "requests": sent.requests, "accepted": sent.accepted,
            "rejected": dict(sent.rejected), "errors": dict(sent.errors),
            "seconds": round(sent.finished - sent.started, 3),
            "accepted_per_s": _rate(sent.accepted, sent.finished - sent.started),
        }
        obs = list(observed.values())
        sp = audit_mod.span(obs)
        e2e = (sp["last_final"] - sp["first_accept"]
               if sp["last_final"] and sp["first_accept"] else None)
        finals = sum(1 for x in obs if x.final_at is not None)
        report["timing"] = {
            **{k: v for k, v in sp.items()},
            "all_final_after_s": round(e2e, 3) if e2e else None,
            "end_to_end_per_s": _rate(finals, e2e),
        }
        report["smsc"] = _smsc_summary(sim_stats)
        report["latency"] = audit_mod.latencies(obs)
        if opts.during_send is not None:  # for bench_chaos's stall after the fault
            report["submitted_times"] = sorted(x.submitted_at for x in obs if x.submitted_at)
        report["audit"] = audit_mod.audit(audited_ids, observed, record, sim_stats)
        report["resources"] = {
            name: {
                "cpu_s": round(after[name]["cpu_s"] - before.get(name, {}).get("cpu_s", 0), 2),
                "peak_rss_mb": round(after[name]["peak_rss_mb"], 1),
            }
            for name in after
        }
        if run.receiver is not None:
            report["callbacks"] = callback_report(
                opts, callbacks_end, ids, classes_by_id, observed, received, receiver_stats,
                sp["first_accept"] or sent.started,
                report["resources"].get("gateway", {}).get("cpu_s"))
        if commands_after and ids:
            redis_cpu = report["resources"].get("redis", {}).get("cpu_s")
            report["redis_commands"] = command_profile(commands_before, commands_after,
                                                       len(ids), redis_cpu)
        if opts.profile:
            report["profile"] = opts.profile
        report["yardstick_ms"]["after"] = yardstick_ms()
    finally:
        run.stop_profiler()
        run.stop()
        if tmp is not None:
            tmp.cleanup()
    if opts.json:
        Path(opts.json).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report


def callback_report(opts: Options, ended: str, ids: list[str], classes_by_id: dict[str, str],
                    observed: dict[str, Any], received: dict[str, list[Any]],
                    stats: dict[str, Any], first_accept: float,
                    gateway_cpu_s: float | None) -> dict[str, Any]:
    """What the receiver saw of this run's accepted messages: every one should
    have exactly one final callback."""
    lost: list[str] = []
    duplicated = 0
    mismatched: list[str] = []  # the receiver's final is not the status in Redis
    statuses: Counter[str] = Counter()
    last_final: float | None = None
    to_final: dict[str, list[float]] = {}
    for mid in ids:
        at, count, seen = received.get(mid) or (None, 0, [])
        if at is None:
            lost.append(mid)
            continue
        duplicated += count - 1
        finals = [x for x in seen if x in CALLBACK_FINAL]
        statuses.update(finals)
        last_final = at if last_final is None else max(last_final, at)
        ob = observed.get(mid)
        if ob is not None:
            if ob.status not in finals:
                mismatched.append(mid)
            if ob.accepted_at is not None:
                for cls in (classes_by_id.get(mid, ""), "all"):
                    to_final.setdefault(cls, []).append(at - ob.accepted_at)
    span = last_final - first_accept if last_final is not None else None
    got = len(ids) - len(lost)
    t0, t1 = stats.get("first_request_at"), stats.get("last_request_at")
    busy = max(1.0, t1 - t0) if t0 and t1 else None  # as _smsc_summary: < 1 s counts as 1
    series = stats.get("series", [])
    peak_requests = peak_events = 0.0
    for (ta, ra, ea, _fa), (tb, rb, eb, _fb) in itertools.pairwise(series):
        if tb > ta:
            peak_requests = max(peak_requests, (rb - ra) / (tb - ta))
            peak_events = max(peak_events, (eb - ea) / (tb - ta))
    events = stats.get("events", 0)
    return {
        "mode": opts.callbacks,
        "batch_size": opts.callback_batch_size if opts.callbacks == "batched" else 1,
        "linger_s": opts.callback_linger if opts.callbacks == "batched" else None,
        "signature": opts.callback_signature,
        "ended": ended,
        "requests": stats.get("requests", 0),
        # opened at the receiver: more than the sender's pool means connections churn
        "connections": stats.get("connections", 0),
        "events": events,
        "final_events": stats.get("final_events", 0),
        "events_per_message": round(events / len(ids), 2) if ids else None,
        "batch_sizes": stats.get("batch_sizes", {}),
        "callbacks_per_s": _rate(stats.get("requests", 0), busy),
        "events_per_s": _rate(events, busy),
        "peak_callbacks_per_s": round(peak_requests),
        "peak_events_per_s": round(peak_events),
        "finals": got,
        "all_final_after_s": round(span, 3) if span else None,
        "end_to_end_per_s": _rate(got, span),
        "gateway_cpu_us_per_event": (round(gateway_cpu_s * 1e6 / events, 1)
                                     if gateway_cpu_s is not None and events else None),
        "gateway_cpu_us_per_msg": (round(gateway_cpu_s * 1e6 / len(ids), 1)
                                   if gateway_cpu_s is not None and ids else None),
        "lost": len(lost),
        "lost_examples": lost[:10],
        "duplicated": duplicated,
        "redelivered_finals": stats.get("redelivered_finals", 0),
        "second_finals": stats.get("second_finals", 0),
        "final_statuses": dict(statuses.most_common()),
        "status_mismatch": len(mismatched),
        "status_mismatch_examples": mismatched[:10],
        "bad_signatures": stats.get("bad_signatures", 0),
        "signatures": stats.get("signatures", {}),
        "bad_bodies": stats.get("bad_bodies", 0),
        "latency": {cls: audit_mod.percentiles(v)
                    for cls, v in sorted(to_final.items(), key=lambda kv: (kv[0] == "all",
                                                                           kv[0]))},
        # once a second: seconds since the first accept, requests, events, final events
        "series": [(round(t - first_accept, 1), r, e, f) for t, r, e, f in series],
    }


def _smsc_summary(s: dict[str, Any]) -> dict[str, Any]:
    if not s:
        return {}
    # Spans under a second count as one: the per-second peak comes from 1 s
    # samples, and a 0.1 s burst of 1,000 is not "10,000 per second" beside it.
    submit_span = max(1.0, s.get("last_submit_at", 0) - s.get("first_submit_at", 0))
    receipt_span = max(1.0, s.get("last_receipt_acked_at", 0)
                       - s.get("first_receipt_acked_at", 0))
    series = s.get("series", [])
    peak_submit = peak_receipts = 0.0
    for (t0, a0, r0), (t1, a1, r1) in itertools.pairwise(series):
        if t1 > t0:
            peak_submit = max(peak_submit, (a1 - a0) / (t1 - t0))
            peak_receipts = max(peak_receipts, (r1 - r0) / (t1 - t0))
    return {
        "submit_sm": s.get("submit_sm"), "acked_ok": s.get("accepted"),
        "unique": s.get("unique"), "duplicates": s.get("duplicates"), "acks": s.get("acks"),
        "receipts": s.get("receipts"), "receipts_acked": s.get("receipts_acked"),
        "receipts_retried": s.get("receipts_retried"), "binds": s.get("binds"),
        "drops": s.get("drops"), "unanswered": s.get("unanswered"),
        "submitted_per_s": _rate(s.get("accepted", 0), submit_span),
        "peak_submitted_per_s": round(peak_submit),
        "receipts_per_s": _rate(s.get("receipts_acked", 0), receipt_span),
        "peak_receipts_per_s": round(peak_receipts),
        # once a second: seconds since the first submit, acknowledged, receipts acknowledged
        "series": [(round(t - s.get("first_submit_at", t), 1), a, r) for t, a, r in series],
    }


def _run_async(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# --- output ---------------------------------------------------------------------------


def format_report(r: dict[str, Any]) -> str:
    def num(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.1f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    send, smsc, timing, audit = r["send"], r.get("smsc", {}), r["timing"], r["audit"]
    lines = [
        f"mode {r['mode']}, {r['messages']:,} messages, mix "
        + ", ".join(f"{k} {v:.1%}" for k, v in r["mix"].items())
        + (f", simulator: {r['sim_options']}" if r.get("sim_options") else ""),
        f"load average before {r['load_before']}, after {r.get('load_after', '?')} "
        f"({r['nproc']} CPUs); yardstick {_yardstick(r)}",
        *[f"note: {n}" for n in r.get("notes", [])],
        "",
        f"{'accepted':<34}{num(send['accepted']):>14}  in {send['seconds']:.1f} s "
        f"({send['requests']:,} requests)",
        f"{'  rejected / errors':<34}{num(sum(send['rejected'].values())):>14}"
        f" / {sum(send['errors'].values()):,} {dict(send['rejected']) or ''}"
        f"{dict(send['errors']) or ''}",
        f"{'accepted/s':<34}{num(send['accepted_per_s']):>14}",
        f"{'submitted/s at SMSC (avg / peak)':<34}{num(smsc.get('submitted_per_s')):>14}"
        f" / {num(smsc.get('peak_submitted_per_s'))}",
        f"{'receipts acked/s (avg / peak)':<34}{num(smsc.get('receipts_per_s')):>14}"
        f" / {num(smsc.get('peak_receipts_per_s'))}",
        f"{'all final after first accept (s)':<34}{num(timing.get('all_final_after_s')):>14}",
        f"{'end to end msg/s':<34}{num(timing.get('end_to_end_per_s')):>14}",
        f"{'SMSC acks by command_status':<34}{smsc.get('acks', {})!s:>14}",
        "",
        f"{'latency (s)':<16}{'':<18}{'n':>9}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}",
    ]
    for cls, lat in r["latency"].items():
        for name, key in (("accept→submit_sm", "accept_to_submit"),
                          ("accept→final", "accept_to_final")):
            p = lat[key]
            lines.append(
                f"{cls:<16}{name:<18}{p.get('count', 0):>9,}"
                + "".join(f"{p.get(k, float('nan')):>9.3f}" for k in ("p50", "p95", "p99", "max"))
            )
    lines += [
        "",
        f"{'audit: accepted':<34}{num(audit['accepted']):>14}",
        f"{'  final statuses':<34}{audit['statuses']!s:>14}",
        f"{'  lost':<34}{num(audit['lost']):>14}"
        + (f"  e.g. {[x['id'] for x in audit['lost_examples'][:3]]}" if audit["lost"] else ""),
        f"{'  duplicated at SMSC':<34}{num(audit.get('duplicated')):>14}"
        + (f"  e.g. {audit['duplicated_messages'][:3]}" if audit.get("duplicated") else ""),
        f"{'  SMSC unique / acknowledged':<34}{num(audit.get('smsc_unique')):>14}"
        f" / {num(audit.get('smsc_acknowledged'))}",
        "",
        f"{'process':<12}{'CPU s':>10}{'peak RSS MB':>14}",
    ]
    for name, u in r.get("resources", {}).items():
        lines.append(f"{name:<12}{u['cpu_s']:>10.1f}{u['peak_rss_mb']:>14.1f}")
    if cb := r.get("callbacks"):
        lines += ["", *_callback_lines(cb, num)]
    if rc := r.get("redis_commands"):
        top = list(rc["commands"].items())[:6]
        lines.append("\nredis, µs per message inside commands, wall clock (of "
                     f"{rc.get('cpu_us_per_msg', '?')} CPU; script calls include the "
                     "commands they run): "
                     + ", ".join(f"{k} {v['us_per_msg']:.1f}" for k, v in top))
    if r.get("profile"):
        lines.append(f"\ngateway profile (py-spy raw): {r['profile']}")
    return "\n".join(lines)


def _yardstick(r: dict[str, Any]) -> str:
    y = r.get("yardstick_ms", {})
    return (f"{y.get('before', '?')} ms before, {y.get('after', '?')} ms after "
            "(loadtest.yardstick; lower is a faster machine)")


def _callback_lines(cb: dict[str, Any], num: Any) -> list[str]:
    mode = cb["mode"] + (f", {cb['batch_size']} per request, linger {cb['linger_s']} s"
                         if cb["mode"] == "batched" else "")
    lines = [
        f"callbacks at the receiver ({mode}; signatures: {cb['signature']}; "
        f"wait ended: {cb['ended']})",
        f"{'  requests / events':<34}{num(cb['requests']):>14} / {num(cb['events'])}"
        f" ({num(cb['events_per_message'])} per message, "
        f"{num(cb.get('connections'))} connections)",
        f"{'  callbacks/s (avg / peak)':<34}{num(cb['callbacks_per_s']):>14}"
        f" / {num(cb['peak_callbacks_per_s'])}",
        f"{'  events/s (avg / peak)':<34}{num(cb['events_per_s']):>14}"
        f" / {num(cb['peak_events_per_s'])}",
        f"{'  finals received':<34}{num(cb['finals']):>14}  {cb['final_statuses']}",
        f"{'  all final at receiver after (s)':<34}{num(cb['all_final_after_s']):>14}",
        f"{'  end to end msg/s (at receiver)':<34}{num(cb['end_to_end_per_s']):>14}",
        f"{'  gateway CPU µs per event / msg':<34}{num(cb['gateway_cpu_us_per_event']):>14}"
        f" / {num(cb['gateway_cpu_us_per_msg'])}",
        f"{'  lost finals':<34}{num(cb['lost']):>14}"
        + (f"  e.g. {cb['lost_examples'][:3]}" if cb["lost"] else ""),
        f"{'  duplicated finals':<34}{num(cb['duplicated']):>14}"
        f"  (same event again {num(cb['redelivered_finals'])}, "
        f"another final {num(cb['second_finals'])})",
        f"{'  final ≠ status in Redis':<34}{num(cb['status_mismatch']):>14}",
        f"{'  bad signatures':<34}{num(cb['bad_signatures']):>14}  good: {cb['signatures']}",
        f"{'  latency (s)':<16}{'accept→callback':<18}{'n':>9}{'p50':>9}{'p95':>9}"
        f"{'p99':>9}{'max':>9}",
    ]
    for cls, p in cb["latency"].items():
        lines.append(f"{'  ' + cls:<16}{'':<18}{p.get('count', 0):>9,}"
                     + "".join(f"{p.get(k, float('nan')):>9.3f}"
                               for k in ("p50", "p95", "p99", "max")))
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("-n", "--messages", type=int, default=1000)
    a("--mix", default="marketing:1", help="class mix, e.g. marketing:0.999,otp:0.001")
    a("--mode", choices=("auto", "batch", "single"), default="auto",
      help="HTTP batch or single requests (auto: batch if the gateway has it)")
    a("--batch-size", type=int, default=1000)
    a("--single-classes", default="otp", help="classes always sent one per request")
    a("--concurrency", type=int, default=32, help="requests in flight (batch mode: at most 8)")
    a("--rate", type=float, default=0.0, help="messages per second (0: flat out)")
    a("--timeout", type=float, default=300.0, help="bound on the whole run, seconds")
    a("--settle", type=float, default=6.0,
      help="quiet seconds at the SMSC that end the wait (more than the 5 s longest "
           "pause after ESME_RTHROTTLED)")
    a("--final-wait", type=float, default=30.0,
      help="after the SMSC is quiet, how long messages may still become final")
    a("--url", default=None, help="drive a running gateway instead of starting one")
    a("--api-key", default=DEFAULT_API_KEY)
    a("--redis-url", default=None, help="the running gateway's Redis (full audit)")
    a("--sim-stats", default=None, help="the running simulator's --stats-file")
    a("--sim-record", default=None, help="the running simulator's --record file")
    a("--sim", default="", help="options for the simulator we start, e.g. '--tps 5000'")
    a("--hold", action="store_true",
      help="keep the simulator down while sending, then bring it up: measures the "
           "delivery of a backlog apart from ingress")
    a("--binds", type=int, default=4, help="connector binds of the gateway we start")
    a("--window", type=int, default=256, help="connector window per bind")
    a("--workers", type=int, default=1, help="gateway worker processes")
    a("--log-level", default="warning", help="gateway log level (info logs every message)")
    a("--gateway-env", action="append", default=[], metavar="SMSGW_X=V",
      help="extra environment for the gateway we start (repeatable)")
    a("--sample", type=int, default=10_000,
      help="without Redis access, read at most this many messages over HTTP")
    a("--workdir", default=None, help="keep logs, stats and record here")
    a("--profile", default=None, metavar="FILE", help="py-spy raw profile of the gateway")
    a("--json", default=None, metavar="FILE", help="write the report as JSON")
    a("--callbacks", choices=("none", "single", "batched"), default="none",
      help="every message's callback_url is a receiver we start; figures counted there "
           "(batched: the gateway batches callbacks, see --callback-batch-size)")
    a("--callback-batch-size", type=int, default=500,
      help="with --callbacks batched: the demo account's callback_batch_size")
    a("--callback-linger", type=float, default=0.1,
      help="with --callbacks batched: the demo account's callback_batch_linger, seconds")
    a("--callback-secret", default=DEFAULT_CALLBACK_SECRET,
      help="the account's callback_secret, to check signatures")
    a("--callback-signature", choices=("timestamped", "raw", "either", "off"),
      default="either",
      help='good signatures: HMAC of "<timestamp>.<body>" (the contract), of the body '
           "alone (the sender before it), either, or no check")
    a("--callback-quiet", type=float, default=30.0,
      help="end the wait for callbacks when none arrived for this many seconds")


def options_from_args(args: argparse.Namespace) -> Options:
    names = Options.__dataclass_fields__
    return Options(**{k: v for k, v in vars(args).items() if k in names})


def main(args: argparse.Namespace) -> int:
    report = execute(options_from_args(args))
    print(format_report(report))
    if report.get("profile") and Path(report["profile"]).exists():
        from loadtest.profile_summary import summarise

        print()
        print(summarise(report["profile"], top=20))
    a = report["audit"]
    ok = a["lost"] == 0 and not a.get("duplicated")
    if cb := report.get("callbacks"):
        # A redelivered final (the same event_id again) is the contract's at-least-once.
        ok = ok and not (cb["lost"] or cb["second_finals"] or cb["bad_signatures"])
    return 0 if ok else 1
