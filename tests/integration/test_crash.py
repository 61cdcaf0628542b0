"""kill -9 in the middle of a burst: nothing lost, and nothing the SMSC
acknowledged (and the gateway recorded) is ever submitted again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from gateway.core.model import FINAL_STATUSES
from gateway.core.processes import gone
from loadtest.harness import GatewayProcess
from protocols.receipt import normalize_message_id
from tests.integration.conftest import AUTH, SimProcess, submit, wait_for, write_config

N = 300


def connector(port: int) -> str:
    # A TPS cap keeps the burst going for a few seconds, so the kill lands mid-flow.
    return (f'[connectors.sim]\nport = {port}\nsystem_id = "smsgw"\npassword = "x"\n'
            "tps = 120\nwindow = 16\n")


def recorded_sim(tmp_path: Path, extra: str = "",
                 claim_idle_ms: int = 1000) -> tuple[SimProcess, Path, Path]:
    """A simulator that records every submit_sm it acknowledges, its record
    file, and a gateway config that sends everything to it (idle lane entries
    reclaimed after `claim_idle_ms`, 1 s unless told)."""
    record = tmp_path / "record.jsonl"
    sim = SimProcess(tmp_path, "--record", str(record)).start()
    config = write_config(tmp_path, connector(sim.port), '[[routes]]\nconnectors = ["sim"]',
                          f"[dispatch]\nclaim_idle_ms = {claim_idle_ms}\n" + extra)
    return sim, record, config


def submit_burst(gw: GatewayProcess, sim: SimProcess, label: str, n: int = N) -> list[str]:
    """`n` messages submitted; returns once a quarter of them reached the SMSC,
    so a fault that follows lands mid-flow."""
    with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
        ids = [submit(client, to=f"+86138{i:08d}", text=f"{label} {i}") for i in range(n)]
    wait_for(lambda: sim.stats()["unique"] >= n // 4, 30)
    return ids


def final_bodies(client: httpx.Client, ids: list[str],
                 timeout: float = 90) -> list[dict[str, Any]]:
    def all_final() -> bool:
        return all(client.get(f"/v1/messages/{m}").json()["status"] in FINAL_STATUSES
                   for m in ids)

    wait_for(all_final, timeout, interval=0.5)
    return [client.get(f"/v1/messages/{m}").json() for m in ids]


def audit(bodies: list[dict[str, Any]], record: Path) -> dict[str, int]:
    """Every accepted message ends once; where the simulator saw a message twice,
    the gateway had not recorded the first submission (its stored SMSC id is the
    later one)."""
    stored: set[str] = set()
    for body in bodies:
        assert body["status"] == "delivered", body
        assert [h["status"] for h in body["history"]].count("delivered") == 1
        assert len(body["smsc_message_ids"]) == 1
        stored.add(body["smsc_message_ids"]["1"])
    seen: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for line in record.read_text().splitlines():
        row = json.loads(line)
        seen[row["h"]].append((row["t"], normalize_message_id(row["id"])))
    assert len(seen) == len(bodies)  # every message reached the SMSC
    resent = 0
    for submissions in seen.values():
        submissions.sort()
        if len(submissions) > 1:
            resent += len(submissions) - 1
            earlier = {sid for _, sid in submissions[:-1]}
            assert not earlier & stored, "a recorded submission was sent again"
    return {"messages": len(bodies), "resent_unrecorded": resent}


# Lane entries of a dead worker are reclaimed only after 10 minutes here, so
# messages that all end within TAKEOVER_BOUND seconds of a kill can only have
# been taken over at once (gateway/dispatch/takeover.py). The bound is generous for a
# busy 2-core machine and still a tenth of the reclaim's wait.
CLAIM_IDLE_MS = 600_000
TAKEOVER_BOUND = 60.0


def workers_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", "gateway.run.cli worker"],
                         capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def kill_one_of_two_workers(
    tmp_path: Path, label: str, claim_idle_ms: int = 1000, env: dict[str, str] | None = None,
    final_timeout: float = 90,
) -> tuple[list[dict[str, Any]], Path, dict[str, Any], bool, str]:
    """A burst to a recording simulator through `--workers 2`, one worker
    killed with SIGKILL once a quarter reached the SMSC: the final bodies, the
    record, the simulator's stats, whether the gateway still ran when all
    were final, and its log."""
    sim, record, config = recorded_sim(tmp_path, claim_idle_ms=claim_idle_ms)
    gw = GatewayProcess(tmp_path, config=config, workers=2, env=env or {})
    try:
        gw.start()
        assert gw.process is not None
        wait_for(lambda: len(workers_of(gw.process.pid)) == 2, 20)
        ids = submit_burst(gw, sim, label)
        os.kill(workers_of(gw.process.pid)[0], signal.SIGKILL)
        # New connections: the old ones may have belonged to the killed worker.
        with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            bodies = final_bodies(client, ids, final_timeout)
        alive = gw.process.poll() is None
    finally:
        gw.stop()
        stats = sim.stop()  # flushes its record
    return bodies, record, stats, alive, gw.log_path.read_text()


def test_kill_9_of_one_worker_mid_burst(tmp_path: Path) -> None:
    """Nothing lost; the killed worker can resend only the submit_sm it had not
    recorded: at most one per in-flight slot, window × binds of the connector
    (docs/architecture.md)."""
    window, binds = 16, 1  # connector(): window = 16, the default binds = 1
    bodies, record, stats, alive, _log = kill_one_of_two_workers(tmp_path, "crash test")
    assert alive  # the supervisor replaced the dead worker
    result = audit(bodies, record)
    assert result["messages"] == N
    assert result["resent_unrecorded"] <= window * binds
    assert stats["duplicates"] <= window * binds


def test_kill_9_of_the_gateway_mid_burst_then_restart(tmp_path: Path) -> None:
    sim, record, config = recorded_sim(tmp_path)
    gw = GatewayProcess(tmp_path, config=config)
    try:
        gw.start()
        ids = submit_burst(gw, sim, "restart test")
        gw.kill()  # the embedded Redis gets SIGTERM from the kernel and flushes its AOF
        restarted = GatewayProcess(tmp_path, config=config, http_port=gw.http_port)
        with restarted, httpx.Client(base_url=restarted.base_url, headers=AUTH,
                                     timeout=10) as client:
            bodies = final_bodies(client, ids)
    finally:
        gw.stop()
        sim.stop()  # flushes its record
    assert audit(bodies, record)["messages"] == N


def test_a_killed_workers_messages_are_taken_over_at_once(tmp_path: Path) -> None:
    """kill -9 of one of two workers mid-burst: the supervisor starts its
    replacement naming the dead one, which takes over the lane entries it held
    at once, so delivery resumes without waiting `dispatch.claim_idle_ms`."""
    window, binds = 16, 1
    bodies, record, stats, alive, log = kill_one_of_two_workers(
        tmp_path, "takeover test", claim_idle_ms=CLAIM_IDLE_MS, final_timeout=TAKEOVER_BOUND)
    assert alive
    assert "takeover_done" in log
    result = audit(bodies, record)
    assert result["messages"] == N
    assert result["resent_unrecorded"] <= window * binds
    assert stats["duplicates"] <= window * binds


def test_after_a_kill_9_of_the_whole_gateway_a_restart_takes_over_at_once(
    tmp_path: Path,
) -> None:
    """The supervisor and both workers killed together (as a container or a
    cgroup is killed): the restarted gateway's workers find the dead consumers
    in the lane group, see from their records that they are certainly dead, and
    take their entries over at once."""
    sim, record, config = recorded_sim(tmp_path, claim_idle_ms=CLAIM_IDLE_MS)
    window, binds = 16, 1
    gw = GatewayProcess(tmp_path, config=config, workers=2)
    restarted: GatewayProcess | None = None
    try:
        gw.start()
        assert gw.process is not None
        wait_for(lambda: len(workers_of(gw.process.pid)) == 2, 20)
        workers = workers_of(gw.process.pid)
        ids = submit_burst(gw, sim, "whole gateway")
        redis = [int(f.read_text()) for f in tmp_path.rglob("redis.pid")]
        everyone = [gw.process.pid, *workers]
        # Stopped first, so that none of them sees another die (a worker would
        # drain on its PDEATHSIG, the supervisor would replace a worker).
        for pid in everyone:
            os.kill(pid, signal.SIGSTOP)
        for pid in everyone:
            os.kill(pid, signal.SIGKILL)
        gw.process.wait()
        gw.process = None
        wait_for(lambda: all(gone(p) for p in workers), 20)
        # The guard stops the embedded Redis once the workers are gone.
        wait_for(lambda: all(gone(p) for p in redis), 30)
        restarted = GatewayProcess(tmp_path, config=config, http_port=gw.http_port, workers=2)
        restarted.start()
        with httpx.Client(base_url=restarted.base_url, headers=AUTH, timeout=10) as client:
            bodies = final_bodies(client, ids, TAKEOVER_BOUND)
        assert "takeover_done" in restarted.log_path.read_text()
    finally:
        gw.stop()
        if restarted is not None:
            restarted.stop()
        stats = sim.stop()  # flushes its record
    result = audit(bodies, record)
    assert result["messages"] == N
    # each killed worker can resend what it had sent and not recorded
    assert result["resent_unrecorded"] <= 2 * window * binds
    assert stats["duplicates"] <= 2 * window * binds
