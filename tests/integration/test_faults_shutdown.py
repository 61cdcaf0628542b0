"""Ordered shutdown: a `kill -9` of the supervisor alone lets its workers drain
into a Redis that stays up until they are gone, so nothing is sent twice."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from loadtest.harness import GatewayProcess
from tests.integration.conftest import AUTH, SimProcess, submit, wait_for, write_config
from tests.integration.test_crash import N, audit, connector, final_bodies, workers_of
from tests.integration.test_faults_redis import redis_pid, state


def test_kill_9_of_the_supervisor_sends_nothing_twice(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    sim = SimProcess(tmp_path, "--record", str(record)).start()
    config = write_config(tmp_path, connector(sim.port), '[[routes]]\nconnectors = ["sim"]',
                          "[dispatch]\nclaim_idle_ms = 1000\n")
    gw = GatewayProcess(tmp_path, config=config, workers=2)
    restarted: GatewayProcess | None = None
    try:
        gw.start()
        assert gw.process is not None
        wait_for(lambda: len(workers_of(gw.process.pid)) == 2, 20)
        workers = workers_of(gw.process.pid)
        with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            ids = [submit(client, to=f"+86138{i:08d}", text=f"supervisor {i}")
                   for i in range(N)]
        wait_for(lambda: sim.stats()["unique"] >= N // 4, 30)
        redis = redis_pid(tmp_path)
        assert redis is not None
        gw.kill()
        # The workers drain and exit; Redis stays up while they do, then stops.
        wait_for(lambda: all(state(p) in (None, "Z") for p in workers), 40)
        wait_for(lambda: state(redis) is None, 30)
        log = gw.log_path.read_text()
        assert "dispatch_failed" not in log
        time.sleep(0.5)
        restarted = GatewayProcess(tmp_path, config=config, http_port=gw.http_port)
        restarted.start()
        with httpx.Client(base_url=restarted.base_url, headers=AUTH, timeout=10) as client:
            bodies = final_bodies(client, ids)
    finally:
        gw.stop()
        if restarted is not None:
            restarted.stop()
        stats = sim.stop()  # flushes its record
    result = audit(bodies, record)
    assert result["messages"] == N
    assert result["resent_unrecorded"] == 0
    assert stats["duplicates"] == 0


def test_kill_9_of_one_worker_resends_at_most_its_window(tmp_path: Path) -> None:
    """A killed worker can resend only the submit_sm it had not recorded: at most
    one per in-flight slot, window × binds of the connector (docs/architecture.md)."""
    record = tmp_path / "record.jsonl"
    sim = SimProcess(tmp_path, "--record", str(record)).start()
    config = write_config(tmp_path, connector(sim.port), '[[routes]]\nconnectors = ["sim"]',
                          "[dispatch]\nclaim_idle_ms = 1000\n")
    window, binds = 16, 1  # connector(): window = 16, the default binds = 1
    gw = GatewayProcess(tmp_path, config=config, workers=2)
    try:
        gw.start()
        assert gw.process is not None
        wait_for(lambda: len(workers_of(gw.process.pid)) == 2, 20)
        with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            ids = [submit(client, to=f"+86138{i:08d}", text=f"worker {i}") for i in range(N)]
        wait_for(lambda: sim.stats()["unique"] >= N // 4, 30)
        os.kill(workers_of(gw.process.pid)[0], signal.SIGKILL)
        with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            bodies = final_bodies(client, ids)
    finally:
        gw.stop()
        stats = sim.stop()
    result = audit(bodies, record)
    assert result["messages"] == N
    assert result["resent_unrecorded"] <= window * binds
    assert stats["duplicates"] <= window * binds
