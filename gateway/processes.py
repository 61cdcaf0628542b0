"""Child processes (Redis, the simulator, workers) end the same way everywhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> int | None:
    """SIGTERM, wait up to `timeout`, then SIGKILL; the exit code (None if no process).

    SIGTERM first because Redis flushes its append-only file and the gateway
    unbinds and acknowledges what it sent on it."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def gone(pid: int) -> bool:
    """Not running (or a zombie left for its parent to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def is_redis(pid: int) -> bool:
    """Whether `pid` runs redis-server (a pid file may name a reused pid)."""
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def guard(supervisor: int, redis_pidfile: Path, workers_file: Path,
          drain_deadline: float = 60.0) -> None:
    """`python -m gateway.processes`: a small process beside the embedded Redis
(this module imports the standard library only, so it costs one bare
interpreter, ~10 MB, not a second copy of the gateway).
    While the supervisor lives it only waits (an ordered stop ends it before
    Redis). If the supervisor dies (kill -9), its workers get SIGTERM from the
    kernel (PDEATHSIG) and drain, sending what they started and recording it
    in Redis; this guard waits until they are gone (at most `drain_deadline`)
    and only then SIGTERMs Redis, which flushes its AOF and exits."""
    while os.getppid() == supervisor:
        time.sleep(0.2)
    deadline = time.monotonic() + drain_deadline
    try:
        pids = [int(line) for line in workers_file.read_text().split()]
    except (OSError, ValueError):
        pids = []
    while any(not gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        pid = int(redis_pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    if not gone(pid) and is_redis(pid):
        os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    guard(int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
