"""Child processes (Redis, the simulator, workers) end the same way everywhere."""

from __future__ import annotations

import signal
import subprocess
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
