"""`smsgw run`: the parent process. It owns the embedded Redis and the local
simulator (when configured) and runs the gateway workers: in-process for one,
as child processes sharing the HTTP port (SO_REUSEPORT) for several.

Workers and the simulator get PR_SET_PDEATHSIG, so even a `kill -9` of this
process makes them stop (the workers drain). The embedded Redis does not: a
guard process (`gateway.core.processes.guard`) stops it cleanly (flushing its append-only file)
only once the workers are gone, so their drain never loses Redis. A dead
embedded Redis is restarted (`RedisWatch`). One gateway per data dir
(`lock_data_dir`) and per HTTP port (`check_port_free`).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.core import logs
from gateway.core.config import Settings
from gateway.core.processes import consumer_name, terminate
from gateway.run.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from gateway.run.operations import redis_url_file

log = logs.get("smsgw.supervisor")

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to the child when its parent dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class RedisWatch(threading.Thread):
    """Restarts the embedded redis-server when it dies (crash, OOM kill, kill -9):
    same port, same data dir, so it reloads its append-only file and the
    workers' clients reconnect to it. `poll()` reaps the dead process, so no
    zombie is left. Restarts back off from 0.2 s to 5 s while they keep failing."""

    def __init__(self, redis: EmbeddedRedis) -> None:
        super().__init__(name="redis-watch", daemon=True)
        self.redis = redis
        self._halt = threading.Event()
        self.restarts = 0

    def run(self) -> None:
        while not self._halt.wait(0.2):
            proc = self.redis.process
            if proc is None or proc.poll() is None:
                continue
            log.error("embedded_redis_died", returncode=proc.returncode, pid=proc.pid)
            delay = 0.2
            while not self._halt.wait(delay):
                try:
                    url = self.redis.start()
                except (EmbeddedRedisError, OSError) as exc:
                    log.error("embedded_redis_restart_failed", error=str(exc))
                    delay = min(5.0, delay * 2)
                    continue
                self.restarts += 1
                assert self.redis.process is not None
                log.info("embedded_redis_restarted", url=url, pid=self.redis.process.pid,
                         restarts=self.restarts)
                break

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(20)


LOCK_FILE = "smsgw.lock"
WORKERS_FILE = "workers.pid"


def lock_data_dir(settings: Settings) -> int:
    """Hold an exclusive `flock` on the data dir's lock file for as long as this
    process lives (the kernel drops it when the process ends, even on kill -9).
    A second gateway on the same data dir is refused, naming the first one's PID."""
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SystemExit(
            f"another gateway (pid {holder}) is already running on data dir {data_dir.resolve()} "
            f"(lock {path}); stop it first or give this one another data_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def check_port_free(settings: Settings) -> None:
    """Workers listen with SO_REUSEPORT, so a second gateway would silently share
    the port with the first: bind it here once without that option, which fails
    while anyone listens on it."""
    if not settings.http.enabled or not settings.http.port:
        return
    host, port = settings.http.host, settings.http.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise SystemExit(
                f"http.port: {host}:{port} is already in use (another gateway or another "
                "program listens on it); stop it or set http.port"
            ) from None


def start_simulator(settings: Settings) -> subprocess.Popen[bytes]:
    sim = settings.simulator
    stats = settings.data_path("smsc-sim-stats.json")
    stats.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            sys.executable, "-m", "gateway.run.cli", "smsc-sim", "--host", sim.host,
            "--port", str(sim.port), "--receipt-delay", str(sim.receipt_delay),
            "--stats-file", str(stats),
        ],
        stdout=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )


def wait_listening(proc: subprocess.Popen[bytes], host: str, port: int,
                   timeout: float = 15.0) -> bool:
    """Until `proc` accepts connections on host:port (False if it exited or the
    time ran out). Workers start after this, so the connector never tries a
    port nobody listens on yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def run_worker(settings: Settings, redis_url: str, worker: int,
               claim_from: Sequence[str] = ()) -> None:
    from gateway.run.worker import serve

    try:
        import uvloop

        uvloop.run(serve(settings, redis_url, worker, claim_from))
    except ImportError:
        asyncio.run(serve(settings, redis_url, worker, claim_from))


def _crash_looping(restarts: list[float], limit: int) -> bool:
    """Count one more worker restart in `restarts` (kept to the last minute);
    True, and logged, when that makes more than `limit`."""
    now = time.monotonic()
    restarts[:] = [t for t in restarts if now - t < 60] + [now]
    if len(restarts) > limit:
        log.error("workers_crash_looping", restarts_last_minute=len(restarts))
        return True
    return False


def _run_in_process(settings: Settings, redis_url: str) -> int:
    """One worker in this process; one that exits because its tasks keep failing
    (`gateway.run.worker.EXIT_TASKS_FAILING`) is started again, as a child would be."""
    restarts: list[float] = []
    while True:
        try:
            run_worker(settings, redis_url, 0)
            return 0
        except SystemExit as exc:
            if exc.code in (0, None):
                return 0
            if _crash_looping(restarts, 5):
                return 1
            log.warning("worker_died", worker=0, returncode=exc.code)
            time.sleep(1)


def run(settings: Settings, config_path: Path | None, workers: int) -> int:
    redis: EmbeddedRedis | None = None
    sim: subprocess.Popen[bytes] | None = None
    children: list[subprocess.Popen[bytes]] = []
    watch: RedisWatch | None = None
    guardian: subprocess.Popen[bytes] | None = None
    lock = lock_data_dir(settings)  # before anything starts: refused runs touch nothing
    check_port_free(settings)
    workers_file = settings.data_path(WORKERS_FILE)
    workers_file.unlink(missing_ok=True)
    try:
        if settings.redis.url:
            redis_url = settings.redis.url
        else:
            redis = EmbeddedRedis(
                settings.data_path(settings.redis.data_dir), settings.redis.port,
                settings.redis.appendfsync,
                # No PDEATHSIG: Redis must outlive the workers that drain into it.
                # If this process is killed, the guard stops Redis after them.
            )
            redis_url = redis.start()
            log.info("embedded_redis_started", url=redis_url, data_dir=str(redis.data_dir))
            # Where `smsgw status` / `smsgw dlq` find this gateway's Redis.
            redis_url_file(settings).write_text(redis_url)
            watch = RedisWatch(redis)
            watch.start()
            guardian = subprocess.Popen(
                [sys.executable, "-m", "gateway.core.processes", str(os.getpid()),
                 str(redis.data_dir / "redis.pid"), str(workers_file)],
                stdin=subprocess.DEVNULL,
            )
        if settings.simulator.enabled:
            sim = start_simulator(settings)
            if not wait_listening(sim, settings.simulator.host, settings.simulator.port):
                log.warning("simulator_not_listening", host=settings.simulator.host,
                            port=settings.simulator.port, exited=sim.poll() is not None)
        if workers == 1:
            return _run_in_process(settings, redis_url)
        args = [sys.executable, "-m", "gateway.run.cli", "worker", "--redis-url", redis_url]
        if config_path is not None:
            args += ["-c", str(config_path)]
        def spawn(index: int, claim_from: str = "") -> subprocess.Popen[bytes]:
            extra = ["--claim-from", claim_from] if claim_from else []
            return subprocess.Popen([*args, "--index", str(index), *extra],
                                    preexec_fn=die_with_parent)

        def publish() -> None:  # where the guard looks for workers still draining
            workers_file.write_text("".join(f"{c.pid}\n" for c in children))

        children.extend(spawn(index) for index in range(workers))
        publish()
        stop = {"flag": False}

        def _stop(_sig: int, _frame: object) -> None:
            stop["flag"] = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        restarts: list[float] = []
        while not stop["flag"]:
            time.sleep(0.2)
            for index, child in enumerate(children):
                if child.poll() is None or stop["flag"]:
                    continue
                # A worker died (crash, OOM kill, kill -9): start another in its
                # place, which takes the dead one's unacknowledged lane entries
                # over at once (gateway/dispatch/takeover.py) instead of leaving them to
                # the reclaim after `dispatch.claim_idle_ms`. It was reaped just
                # now (poll), so it is certainly dead.
                if _crash_looping(restarts, 5 * workers):
                    return 1
                log.warning("worker_died", worker=index, returncode=child.returncode)
                children[index] = spawn(index, claim_from=consumer_name(child.pid))
                publish()
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        terminate(sim, 5)
        terminate(guardian, 5)  # an ordered stop: Redis is stopped here, last
        if watch is not None:
            watch.stop()
        if redis is not None:
            redis.stop()
            log.info("embedded_redis_stopped")
        os.close(lock)
