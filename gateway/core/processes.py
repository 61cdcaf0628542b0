"""Child processes (Redis, the simulator, workers) end the same way everywhere,
and a worker's identity: enough to tell later, from another process, that it is
certainly dead (its lane entries can be taken over at once)."""

from __future__ import annotations

import os
import signal
import socket
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


def consumer_name(pid: int | None = None) -> str:
    """The lane consumer (and webhook lease holder) name of the worker `pid`
    (default: this process) on this host."""
    return f"{socket.gethostname()}-{os.getpid() if pid is None else pid}"


def start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat;
    the command name in field 2 may hold spaces and parentheses, hence the split
    at the last one); None if no such process is visible."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _read(path: str, link: bool = False) -> str:
    try:
        return os.readlink(path) if link else Path(path).read_text().strip()
    except OSError:
        return ""


def identity(pid: int | None = None) -> dict[str, str | int]:
    """Who this process is, as another process on the same machine and in the
    same pid namespace can check it: boot id, pid namespace, uid, pid, start
    time. A pid alone is not enough: it is reused, and it means nothing on
    another host or in another container."""
    pid = os.getpid() if pid is None else pid
    return {
        "boot": _read("/proc/sys/kernel/random/boot_id"),
        "pidns": _read("/proc/self/ns/pid", link=True),
        "uid": os.getuid(),
        "pid": pid,
        "start": start_time(pid) or 0,
    }


def certainly_dead(record: dict[str, object], here: dict[str, str | int] | None = None) -> bool:
    """Whether the process `record` (an `identity()`) describes has certainly
    ended: recorded on this boot of this machine and in our pid namespace
    (`here`, default: this process's), and its pid either runs no more (or is a
    zombie) or now runs a process that started at another time (a reused pid).
    Anything else is not certain — another host, another container, a record
    without a boot id (/proc unreadable), a process we may not see (hidden by
    `hidepid` when it belongs to another uid) — and False."""
    here = identity() if here is None else here
    boot, pidns = record.get("boot"), record.get("pidns")
    if not boot or not pidns or boot != here["boot"] or pidns != here["pidns"]:
        return False
    pid, started = record.get("pid"), record.get("start")
    if not isinstance(pid, int) or not isinstance(started, int) or pid <= 0 or started <= 0:
        return False
    now = start_time(pid)
    if now is None:  # not visible: ended, or another uid's hidden from us (hidepid)
        return record.get("uid") == here["uid"]
    if now != started:
        return True  # the pid was reused: the recorded process is gone
    return gone(pid)  # the same process, ended and not reaped yet (a zombie)


def is_redis(pid: int) -> bool:
    """Whether `pid` runs redis-server (a pid file may name a reused pid)."""
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def guard(supervisor: int, redis_pidfile: Path, workers_file: Path,
          drain_deadline: float = 60.0) -> None:
    """`python -m gateway.core.processes`: a small process beside the embedded Redis
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
