"""Start and stop real gateway processes on loopback ports picked at run time.

Used by the demo, the load generator and the integration tests, so all three
drive the gateway exactly as an operator would: `smsgw run` with a config file
and `SMSGW_…` environment overrides.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gateway.core.processes import terminate
from gateway.run.embedded_redis import free_port


@dataclass
class GatewayProcess:
    workdir: Path
    config: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    http_port: int = 0
    sim_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    # HTTPS (env sets SMSGW_HTTP__TLS_CERT): what httpx verifies the listener
    # with, e.g. an ssl.SSLContext trusting the test CA.
    verify: Any = True

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.http_port = self.http_port or free_port()
        self.sim_port = self.sim_port or free_port()

    @property
    def base_url(self) -> str:
        scheme = "https" if "SMSGW_HTTP__TLS_CERT" in self.env else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "gateway.log"

    @property
    def sim_stats_path(self) -> Path:
        return self.workdir / "data" / "smsc-sim-stats.json"

    def sim_stats(self) -> dict[str, Any]:
        return dict(json.loads(self.sim_stats_path.read_text()))

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "SMSGW_DATA_DIR": str(self.workdir / "data"),
            "SMSGW_HTTP__PORT": str(self.http_port),
        }
        if self.config is None:  # the default config's simulator and its connector
            env["SMSGW_SIMULATOR__PORT"] = str(self.sim_port)
            env["SMSGW_CONNECTORS__SIM__PORT"] = str(self.sim_port)
        env.update(self.env)
        args = [sys.executable, "-m", "gateway.run.cli", "run", "--workers", str(self.workers)]
        if self.config is not None:
            args += ["-c", str(self.config)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                ready = httpx.get(f"{self.base_url}/readyz", timeout=1, verify=self.verify)
                if ready.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway not ready in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, timeout: float = 20.0) -> int | None:
        proc, self.process = self.process, None
        return terminate(proc, timeout)

    def kill(self) -> None:
        """kill -9: no clean-up, as in a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@dataclass
class SimulatorProcess:
    """`smsgw smsc-sim` as its own process (its own core), with any of its options.

    ``args`` are extra command-line options, e.g. ``["--tps", "5000"]``. Stats
    and the per-message record go under ``workdir``.
    """

    workdir: Path
    args: list[str] = field(default_factory=list)
    port: int = 0
    record: bool = False
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.port = self.port or free_port()

    @property
    def stats_path(self) -> Path:
        return self.workdir / f"smsc-sim-{self.port}.json"

    @property
    def record_path(self) -> Path:
        return self.workdir / f"smsc-sim-{self.port}.jsonl"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"smsc-sim-{self.port}.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = 15.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "gateway.run.cli", "smsc-sim", "--port", str(self.port),
                "--stats-file", str(self.stats_path), *self.args]
        if self.record:
            args += ["--record", str(self.record_path)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"smsc-sim exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                if self.stats_path.exists():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"smsc-sim not listening in {timeout}s")

    def stats(self) -> dict[str, Any]:
        for _ in range(20):  # the file is replaced atomically; tolerate a missing one
            try:
                return dict(json.loads(self.stats_path.read_text()))
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.05)
        return {}

    def signal(self, sig: int) -> None:
        if self.process is not None:
            self.process.send_signal(sig)

    def go_down(self) -> None:
        self.signal(signal.SIGUSR1)

    def come_up(self) -> None:
        self.signal(signal.SIGUSR2)

    def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        proc, self.process = self.process, None
        terminate(proc, timeout)
        return self.stats()

    def __enter__(self) -> SimulatorProcess:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@dataclass
class ReceiverProcess:
    """`python -m loadtest.receiver` (the webhook receiver) as its own process.

    ``args`` are extra options, e.g. ``["--signature", "either"]``. Totals are
    rewritten every second; `messages()` stops nothing but asks for the
    per-message table (SIGUSR1) and reads it, `stop()` ends the process and
    returns its last totals.
    """

    workdir: Path
    secret: str = ""
    args: list[str] = field(default_factory=list)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.port = self.port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/callbacks"

    @property
    def stats_path(self) -> Path:
        return self.workdir / f"receiver-{self.port}.json"

    @property
    def messages_path(self) -> Path:
        return self.workdir / f"receiver-{self.port}.messages.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"receiver-{self.port}.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = 15.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "loadtest.receiver", "--port", str(self.port),
                "--secret", self.secret, "--stats-file", str(self.stats_path),
                "--messages-file", str(self.messages_path), *self.args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"receiver exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                if self.stats_path.exists():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"receiver not listening in {timeout}s")

    def stats(self) -> dict[str, Any]:
        for _ in range(20):  # the file is replaced atomically; tolerate a missing one
            try:
                return dict(json.loads(self.stats_path.read_text()))
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.05)
        return {}

    def messages(self, timeout: float = 30.0) -> dict[str, list[Any]]:
        """{message id: [first final at, final events, [statuses seen]]}, asked for now."""
        before = _stamp(self.messages_path)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if _stamp(self.messages_path) not in (before, None):
                    break
                time.sleep(0.05)
        return self.read_messages()

    def read_messages(self) -> dict[str, list[Any]]:
        try:
            return dict(json.loads(self.messages_path.read_bytes()))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM (the receiver writes its totals and its per-message table), then its totals."""
        proc, self.process = self.process, None
        terminate(proc, timeout)
        return self.stats()

    def __enter__(self) -> ReceiverProcess:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _stamp(path: Path) -> tuple[int, int] | None:
    """Which version of a file that is replaced by rename (a new inode each time)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


async def command_stats(redis: Any) -> dict[str, tuple[int, int]]:
    """Redis's `INFO commandstats` as {command: (calls, usec)}. A script's usec
    includes the commands it runs, which are counted again under their own names."""
    stats = await redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for k, v in stats.items()}
