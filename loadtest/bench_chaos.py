"""Faults during a burst: what is lost, what is sent twice, how long delivery stalls.

``python -m loadtest.bench_chaos [-n 50000] [--faults worker,supervisor,redis,external-redis]``

Each fault gets a burst of its own (`loadtest.loadgen`: ``-n`` messages, 90 %
marketing sent in batches, 10 % OTP one per request, ``--workers 2``, receipts
from the simulator and final-status callbacks to `loadtest.receiver`), and
``--at`` seconds into it:

- ``worker``: ``kill -9`` of one worker; the supervisor starts another;
- ``supervisor``: ``kill -9`` of the supervisor (``smsgw run``) alone; once its
  workers and Redis are gone, ``smsgw run`` again on the same data dir and port;
- ``redis``: ``kill -9`` of the embedded ``redis-server``;
- ``external-redis``: the gateway on an external Redis (``redis.url``) that is
  killed with ``-9`` and started again on the same port and AOF after
  ``--down`` seconds.

Printed per fault: accepted, lost (accepted but not final, or unknown to the
gateway), duplicated at the SMSC (``submit_sm`` of one part acknowledged more
than once), final statuses, callbacks missing / duplicated at the receiver, and
the longest stall in delivery after the fault (the widest gap between two
consecutive ``submitted`` times from the fault on; a fault that stops nothing
shows the burst's usual gap). Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.core.processes import gone
from gateway.run.embedded_redis import EmbeddedRedis, free_port
from loadtest.loadgen import Options, Run, _children, _comm, execute
from loadtest.yardstick import yardstick_ms

Fault = Callable[[Run], None]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").replace("\0", " ")
    except OSError:
        return ""


def _wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(gone(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


class Chaos:
    """The faults; each records when it struck in `at` (epoch seconds)."""

    def __init__(self, delay: float, down: float) -> None:
        self.delay, self.down = delay, down
        self.at: float | None = None
        self.notes: list[str] = []
        self.external: EmbeddedRedis | None = None

    def _strike(self) -> None:
        time.sleep(self.delay)
        self.at = time.time()

    def worker(self, run: Run) -> None:
        assert run.gateway_pid is not None
        self._strike()
        kids = [k for k in _children(run.gateway_pid) if " worker " in _cmdline(k)]
        if not kids:
            self.notes.append("no worker found to kill")
            return
        os.kill(kids[0], signal.SIGKILL)

    def supervisor(self, run: Run) -> None:
        assert run.gateway is not None and run.gateway_pid is not None
        kids = list(_children(run.gateway_pid))
        self._strike()
        run.gateway.kill()
        if not _wait_gone(kids, 60):
            self.notes.append("workers or Redis still running 60 s after the supervisor died")
        run.gateway.start()
        self.notes.append(f"gateway started again {time.time() - (self.at or 0):.1f} s after")

    def redis(self, run: Run) -> None:
        assert run.gateway_pid is not None
        self._strike()
        kids = [k for k in _children(run.gateway_pid) if _comm(k).startswith("redis-server")]
        if not kids:
            self.notes.append("no embedded redis-server found to kill")
            return
        os.kill(kids[0], signal.SIGKILL)

    def external_redis(self, _run: Run) -> None:
        assert self.external is not None and self.external.process is not None
        self._strike()
        self.external.process.kill()
        self.external.process.wait()
        time.sleep(self.down)
        again = EmbeddedRedis(self.external.data_dir, port=self.external.port)
        again.start()
        self.external = again


def longest_stall(submitted: list[float], since: float | None) -> float | None:
    if since is None:
        return None
    times = sorted(t for t in submitted if t >= since - 1.0)
    if not times:
        return None
    gaps = [b - a for a, b in zip([since, *times], times, strict=False)]
    return round(max(gaps), 2)


def run_fault(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    chaos = Chaos(args.at, args.down)
    opts: dict[str, Any] = {}
    if name == "external-redis":
        chaos.external = EmbeddedRedis(workdir / f"{name}-redis", port=free_port())
        chaos.external.start()
        opts["redis_url"] = chaos.external.url
        opts["gateway_env"] = [f"SMSGW_REDIS__URL={chaos.external.url}"]
    fault: Fault = getattr(chaos, name.replace("-", "_"))
    try:
        report = execute(Options(
            messages=args.messages, mix="marketing:0.9,otp:0.1", workers=2,
            callbacks="single", rate=args.rate, timeout=args.timeout, settle=args.settle,
            final_wait=args.final_wait, workdir=str(workdir / name),
            during_send=fault, **opts,
        ))
    finally:
        if chaos.external is not None:
            chaos.external.stop()
    a = report["audit"]
    cb = report.get("callbacks", {})
    submitted = report.get("submitted_times", [])
    return {
        "fault": name,
        "accepted": a["accepted"],
        "lost": a["lost"],
        "duplicated": a.get("duplicated"),
        "statuses": a["statuses"],
        "callbacks_missing": cb.get("lost"),
        "callbacks_duplicated": cb.get("duplicated"),
        "stall_s": longest_stall(submitted, chaos.at),
        "notes": chaos.notes + report.get("notes", [])[-1:],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--messages", type=int, default=50_000)
    p.add_argument("--faults", default="worker,supervisor,redis,external-redis")
    p.add_argument("--rate", type=float, default=5_000.0, help="messages/s offered")
    p.add_argument("--at", type=float, default=2.0, help="seconds into the burst")
    p.add_argument("--down", type=float, default=3.0, help="external Redis: seconds down")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--settle", type=float, default=20.0)
    p.add_argument("--final-wait", type=float, default=60.0)
    args = p.parse_args(argv)
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - {"worker", "supervisor", "redis", "external-redis"}
    if unknown:
        p.error(f"unknown fault(s): {', '.join(sorted(unknown))}")
    print(f"yardstick {yardstick_ms():.1f} ms (loadtest.yardstick; lower is a faster machine)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="smsgw-chaos-") as tmp:
        for name in faults:
            try:
                rows.append(run_fault(name, args, Path(tmp)))
            except Exception as exc:  # e.g. Redis never came back: nothing to audit
                print(f"{name:<15} FAILED: {type(exc).__name__}: {exc}", flush=True)
                rows.append({"fault": name, "lost": None})
                continue
            r = rows[-1]
            print(f"{r['fault']:<15} accepted {r['accepted']:>7,}  lost {r['lost']:>5,}  "
                  f"duplicated {r['duplicated']!s:>5}  stall {r['stall_s']!s:>6} s  "
                  f"callbacks missing/dup {r['callbacks_missing']}/{r['callbacks_duplicated']}  "
                  f"{r['statuses']}", flush=True)
            for note in r["notes"]:
                print(f"{'':<15} note: {note}")
    print(f"yardstick {yardstick_ms():.1f} ms after")
    return 1 if any(r["lost"] is None or r["lost"] for r in rows) else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
