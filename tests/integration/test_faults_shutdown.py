"""Ordered shutdown: a `kill -9` of the supervisor alone lets its workers drain
into a Redis that stays up until they are gone, so nothing is sent twice. (A
`kill -9` of one worker, and the duplicates it may cause: test_crash.py.)"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from loadtest.harness import GatewayProcess
from tests.integration.conftest import AUTH, wait_for
from tests.integration.test_crash import (
    N,
    audit,
    final_bodies,
    recorded_sim,
    submit_burst,
    workers_of,
)
from tests.integration.test_faults_redis import redis_pid, state


def test_kill_9_of_the_supervisor_sends_nothing_twice(tmp_path: Path) -> None:
    sim, record, config = recorded_sim(tmp_path)
    gw = GatewayProcess(tmp_path, config=config, workers=2)
    restarted: GatewayProcess | None = None
    try:
        gw.start()
        assert gw.process is not None
        wait_for(lambda: len(workers_of(gw.process.pid)) == 2, 20)
        workers = workers_of(gw.process.pid)
        ids = submit_burst(gw, sim, "supervisor")
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
