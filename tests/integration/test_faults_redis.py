"""Redis lost mid-delivery: the embedded redis-server is restarted by the
supervisor, an external one comes back on its own, and in both cases delivery
resumes without restarting the gateway; /readyz says when it cannot work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.run.embedded_redis import EmbeddedRedis, free_port
from loadtest.harness import GatewayProcess
from tests.integration.conftest import AUTH, submit, wait_for
from tests.integration.test_crash import (
    audit,
    final_bodies,
    recorded_sim,
    submit_burst,
)

N = 200


def redis_pid(workdir: Path) -> int | None:
    for pidfile in workdir.rglob("redis.pid"):
        try:
            return int(pidfile.read_text().strip())
        except ValueError:
            return None
    return None


def state(pid: int) -> str | None:
    """The process's state letter (Z: zombie), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def readyz(gw: GatewayProcess) -> int:
    try:
        return httpx.get(f"{gw.base_url}/readyz", timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_killed_embedded_redis_is_restarted_and_delivery_resumes(tmp_path: Path) -> None:
    sim, record, config = recorded_sim(tmp_path)
    gw = GatewayProcess(tmp_path, config=config)
    try:
        gw.start()
        assert gw.process is not None
        supervisor = gw.process.pid
        ids = submit_burst(gw, sim, "redis loss", N)
        first = redis_pid(tmp_path)
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: (redis_pid(tmp_path) or first) != first, 20)
        second = redis_pid(tmp_path)
        assert second is not None and state(second) not in (None, "Z")
        wait_for(lambda: state(first) is None, 10)  # reaped: no zombie left
        wait_for(lambda: readyz(gw) == 200, 30)
        with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            bodies = final_bodies(client, ids)
        assert gw.process is not None and gw.process.pid == supervisor
        assert gw.process.poll() is None  # the gateway was never restarted
        log = gw.log_path.read_text()
        assert "embedded_redis_died" in log and "embedded_redis_restarted" in log
    finally:
        gw.stop()
        sim.stop()  # flushes its record
    assert audit(bodies, record)["messages"] == N


def test_external_redis_killed_and_back_delivery_resumes(tmp_path: Path) -> None:
    external = EmbeddedRedis(tmp_path / "external-redis", free_port())
    url = external.start()
    sim, record, config = recorded_sim(tmp_path, f'\n[redis]\nurl = "{url}"\n')
    gw = GatewayProcess(tmp_path, config=config)
    try:
        gw.start()
        assert gw.process is not None
        supervisor = gw.process.pid
        ids = submit_burst(gw, sim, "external", N)
        assert external.process is not None
        external.process.kill()  # kill -9
        external.process.wait()
        external.process = None
        # Not ready while Redis is away: a problem+json 503.
        r = wait_for(lambda: (lambda r: r if r.status_code == 503 else None)(
            httpx.get(f"{gw.base_url}/readyz", timeout=5)), 10)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "not_ready"
        assert httpx.get(f"{gw.base_url}/healthz", timeout=5).json()["status"] == "alive"
        time.sleep(3)
        assert readyz(gw) == 503
        external.start()  # same port, same data dir (its append-only file)
        wait_for(lambda: readyz(gw) == 200, 30)
        with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            bodies = final_bodies(client, ids)
        assert gw.process is not None and gw.process.pid == supervisor
        assert gw.process.poll() is None
        assert "task_failed" in gw.log_path.read_text()  # logged at once, then restarted
    finally:
        gw.stop()
        external.stop()
        sim.stop()
    assert audit(bodies, record)["messages"] == N


def status_of(tmp_path: Path, http_port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMSGW_DATA_DIR": str(tmp_path / "data"),
           "SMSGW_HTTP__PORT": str(http_port)}
    return subprocess.run([sys.executable, "-m", "gateway.run.cli", "status"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)


def test_healthz_says_alive_and_status_shows_the_dispatchers(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path) as gw:
        body = httpx.get(f"{gw.base_url}/healthz", timeout=5).json()
        assert body["status"] == "alive"
        assert body["pid"] > 0

        def reported() -> dict[str, Any] | None:
            out = status_of(tmp_path, gw.http_port)
            assert out.returncode == 0, out.stderr
            workers = json.loads(out.stdout)["connectors"].get("sim", {})
            return next(iter(workers.values()), None)

        report = wait_for(reported, 20, interval=0.5)
        assert report["dispatcher"] == "running"
        assert report["dispatcher_failures"] == 0


def test_status_against_a_stopped_gateway_is_one_line(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path)
    gw.start()
    gw.stop()
    out = status_of(tmp_path, gw.http_port)
    assert out.returncode != 0
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "no running gateway" in lines[0]


def ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.TransportError:  # between a worker's exit and the next one's start
        return False


def test_a_task_failing_repeatedly_ends_its_worker_and_a_new_one_delivers(
        tmp_path: Path) -> None:
    """Redis answering but refusing the dispatcher's reads (an ACL that takes
    XREADGROUP away: every read fails with NOPERM, not a lost connection) makes
    the dispatchers fail again and again: a worker exits 70, the supervisor
    starts another, and once the ACL is back everything queued goes out."""
    import redis as sync_redis

    sim, record, config = recorded_sim(tmp_path)
    gw = GatewayProcess(tmp_path, config=config, workers=2)
    try:
        gw.start()
        url = next(tmp_path.rglob("redis.url")).read_text().strip()
        r = sync_redis.Redis.from_url(url)
        with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            wait_for(lambda: client.get("/readyz").status_code == 200, 20)
            r.acl_setuser("default", enabled=True, commands=["-xreadgroup"])
            try:
                wait_for(lambda: '"returncode":70' in gw.log_path.read_text(), 60)
                assert "task_failing_repeatedly" in gw.log_path.read_text()
            finally:
                r.acl_setuser("default", enabled=True, commands=["+xreadgroup"])
            wait_for(lambda: ready(client), 60, interval=0.5)
            ids = [submit(client, to=f"+86138{i:08d}", text=f"after oom {i}")
                   for i in range(50)]
        with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            bodies = final_bodies(client, ids)
        assert gw.process is not None and gw.process.poll() is None
        r.close()
    finally:
        gw.stop()
        sim.stop()
    assert audit(bodies, record)["messages"] == 50
