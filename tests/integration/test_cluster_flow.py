"""The whole flow on a real 3-master Redis Cluster and on one server, by the
same tests: HTTP batch and single messages → SMPP → receipts → webhooks,
scheduled messages, expiry, a killed worker's messages taken over, MO
reassembly. On the cluster, every key must live on the master that owns its
slot (a script that reached past its declared keys would write elsewhere)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from redis.crc import key_slot

from gateway.store import Store
from loadtest.harness import GatewayProcess
from tests.integration.conftest import AUTH, SimProcess, submit, wait_final, wait_for, write_config
from tests.integration.receiver import Receiver
from tests.integration.test_crash import audit, kill_one_of_two_workers
from tests.integration.test_webhooks import FAST_RETRIES, _mo_requests, _mo_wiring, _udh_part
from tests.redis_cluster import RedisCluster


@dataclass
class Backend:
    name: str
    url: str
    shards: int  # 0: the configured default (16 on a cluster)
    cluster: RedisCluster | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {"SMSGW_REDIS__URL": self.url}
        if self.shards:
            env["SMSGW_REDIS__SHARDS"] = str(self.shards)
        return env

    def store(self) -> Store:
        return Store.from_url(self.url, shards=self.shards or 16)

    def keys_per_node(self) -> list[int]:
        if self.cluster is None:
            with redis.Redis.from_url(self.url) as r:
                return [int(r.dbsize())]
        counts = []
        for _, port in self.cluster.nodes:
            with self.cluster.client(port) as node:
                counts.append(int(node.dbsize()))
        return counts

    def misplaced(self) -> list[tuple[int, bytes]]:
        """Keys stored on a cluster node that does not own their slot."""
        if self.cluster is None:
            return []
        out = []
        for _, port in self.cluster.nodes:
            with self.cluster.client(port) as node:
                owned: set[int] = set()
                for start, end, *nodes in node.execute_command("CLUSTER", "SLOTS"):
                    if nodes[0][1] == port:
                        owned.update(range(start, end + 1))
                keys = list(node.scan_iter(count=1000))
                assert len(keys) < 1_000_000
                out += [(port, k) for k in keys if key_slot(k) not in owned]
        return out


@pytest.fixture(params=["single", "cluster"])
def backend(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Backend]:
    if request.param == "single":
        b = Backend("single", redis_url, 4)
        redis.Redis.from_url(redis_url).flushall()
    else:
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        cluster.flushall()
        b = Backend("cluster", cluster.url, 0, cluster)
    yield b
    assert sum(b.keys_per_node()) > 0  # the flow ran on this backend
    assert b.misplaced() == []


def test_batch_and_single_messages_go_out_with_receipts_and_callbacks(
    tmp_path: Path, backend: Backend, receiver: Receiver
) -> None:
    with GatewayProcess(tmp_path, env={**FAST_RETRIES, **backend.env}, workers=2) as gw, \
            httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=30) as client:
        r = client.post("/v1/messages/batch", json={
            "from": "SHOP", "text": "sale {{n}}", "callback_url": receiver.url,
            "messages": [{"to": f"+86138{i:08d}", "vars": {"n": i}} for i in range(300)],
        })
        assert r.status_code == 202, r.text
        batch_id = r.json()["batch_id"]
        ids = [a["id"] for a in r.json()["accepted"]]
        assert len(ids) == 300
        ids += [submit(client, to=f"+86139{i:08d}", callback_url=receiver.url)
                for i in range(40)]
        keyed = {"to": "+8613700000001", "from": "SHOP", "text": "once",
                 "callback_url": receiver.url}
        first = client.post("/v1/messages", json=keyed, headers={"Idempotency-Key": "k-1"})
        again = client.post("/v1/messages", json=keyed, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == again.status_code == 202
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert first.json()["id"] == again.json()["id"]
        ids.append(first.json()["id"])
        later = submit(client, to="+8613700000002", callback_url=receiver.url,
                       send_at=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                             time.gmtime(time.time() + 3)))
        assert client.get(f"/v1/messages/{later}").json()["status"] == "scheduled"
        ids.append(later)
        wait_for(lambda: len(receiver.finals()) >= len(ids), 90, interval=0.2)
        assert receiver.finals() == dict.fromkeys(ids, 1)  # each final once
        assert {e["status"] for e in receiver.taken()} == {"delivered"}
        body = wait_final(client, later)
        assert [h["status"] for h in body["history"]] == [
            "accepted", "scheduled", "queued", "submitted", "delivered"]
        assert body["smsc_message_ids"]["1"]
        counts = client.get(f"/v1/batches/{batch_id}").json()
        assert counts["total"] == 300 and counts["counts"] == {"delivered": 300}
    if backend.cluster is not None:  # spread over every master
        assert all(n > 0 for n in backend.keys_per_node()), backend.keys_per_node()
    # the 300 batch messages live in one shard, the singles in several
    shards = {i[12:14] for i in ids[:300]}
    assert len(shards) == 1
    assert len({i[12:14] for i in ids[300:340]}) > 1


def test_no_receipt_by_the_end_of_validity_means_expired(
    tmp_path: Path, backend: Backend
) -> None:
    sim = SimProcess(tmp_path, "--receipt-delay", "3600").start()
    config = write_config(
        tmp_path, f'[connectors.slow]\nport = {sim.port}\nsystem_id = "smsgw"\n'
        'password = "x"\n', '[[routes]]\nconnectors = ["slow"]',
        "[messages]\nreceipt_grace = 0\n",
    )
    try:
        with GatewayProcess(tmp_path, config=config, env=backend.env) as gw, \
                httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            ids = [submit(client, to=f"+86138{i:08d}", validity=2) for i in range(8)]
            for mid in ids:
                body = wait_final(client, mid, timeout=30)
                assert body["status"] == "expired"
                assert [h["status"] for h in body["history"]][-2:] == ["submitted", "expired"]
    finally:
        sim.stop()


def test_a_killed_workers_messages_are_reclaimed_and_all_delivered(
    tmp_path: Path, backend: Backend
) -> None:
    bodies, record, stats, _alive, _log = kill_one_of_two_workers(
        tmp_path, "cluster crash", env=backend.env)
    result = audit(bodies, record)
    assert result["messages"] == len(bodies)
    assert result["resent_unrecorded"] <= 16 and stats["duplicates"] <= 16


async def test_a_concatenated_mo_goes_out_once_whole(
    backend: Backend, receiver: Receiver
) -> None:
    store = backend.store()
    try:
        _, webhooks, _, receipts = _mo_wiring(store, receiver)
        for conversation in range(5):
            parts = [_udh_part(conversation, 3, seq, f"{conversation}-{seq} ",
                               source=f"861380013{conversation:04d}") for seq in (3, 1, 2)]
            assert await receipts.on_deliver("sim", parts[:2]) == [0, 0]
            assert await receipts.on_deliver("sim", parts[1:]) == [0, 0]  # a copy, then the last
        bodies = [r["events"][0] for r in await _mo_requests(webhooks, receiver, 5)]
        assert sorted(b["text"] for b in bodies) == [
            f"{c}-1 {c}-2 {c}-3 " for c in range(5)]
        assert await store.mo_overdue(time.time() + 3600) == []
    finally:
        await store.close()
