"""Child processes (Redis, the simulator, workers) end the same way everywhere."""

from __future__ import annotations

import signal
import subprocess


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
