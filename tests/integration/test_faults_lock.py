"""One gateway per data dir, one per HTTP port: a second `smsgw run` is refused
at once with a message saying why, and the first one keeps working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from gateway.run.embedded_redis import free_port
from loadtest.harness import GatewayProcess


def second_run(data_dir: Path, http_port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMSGW_DATA_DIR": str(data_dir), "SMSGW_HTTP__PORT": str(http_port),
           "SMSGW_SIMULATOR__PORT": str(free_port())}
    return subprocess.run([sys.executable, "-m", "gateway.run.cli", "run"], env=env,
                          capture_output=True, text=True, timeout=30, check=False)


def test_second_run_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path) as gw:
        assert gw.process is not None
        out = second_run(tmp_path / "data", free_port())
        assert out.returncode != 0
        assert f"another gateway (pid {gw.process.pid}) is already running" in out.stderr
        assert httpx.get(f"{gw.base_url}/readyz", timeout=5).status_code == 200


def test_second_run_on_the_same_port_is_refused(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path / "first") as gw:
        out = second_run(tmp_path / "second", gw.http_port)
        assert out.returncode != 0
        assert f"http.port: 127.0.0.1:{gw.http_port} is already in use" in out.stderr
        assert not (tmp_path / "second" / "redis.url").exists()  # nothing was started
        assert httpx.get(f"{gw.base_url}/readyz", timeout=5).status_code == 200
