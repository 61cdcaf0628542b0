"""redis-py's cluster client, built by gateway.store.client.connect, on a real
3-master Redis Cluster: what the store's key layout may rely on (scripts on one
slot, pipelines across masters, SCAN over all of them) and what it must not
(cross-slot scripts and reads, scripts that reach keys they were not given)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from redis.cluster import key_slot
from redis.exceptions import (
    ClusterCrossSlotError,
    NoScriptError,
    RedisClusterException,
    ResponseError,
)

from gateway.core.processes import gone, terminate
from gateway.run.embedded_redis import redis_server_binary
from gateway.store import Store
from gateway.store.client import connect, is_cluster
from tests.redis_cluster import RedisCluster

# Sets both keys it is given; returns the first key and the value.
TWO_KEYS = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[1])
return {KEYS[1], ARGV[1]}
"""


@pytest.fixture
async def client(redis_cluster: RedisCluster) -> AsyncIterator[aioredis.RedisCluster]:
    redis_cluster.flushall()
    c = connect(redis_cluster.url)
    assert isinstance(c, aioredis.RedisCluster)
    try:
        yield c
    finally:
        await c.aclose()


def master_slots(cluster: RedisCluster) -> dict[int, list[tuple[int, int]]]:
    """port → the slot ranges that master serves, as the cluster itself says."""
    with cluster.client(cluster.nodes[0][1]) as node:
        reply = node.execute_command("CLUSTER", "SLOTS")
    out: dict[int, list[tuple[int, int]]] = {}
    for start, end, master, *_ in reply:
        out.setdefault(int(master[1]), []).append((int(start), int(end)))
    return out


def tag_per_master(cluster: RedisCluster) -> dict[int, str]:
    """port → a hash tag whose slot that master serves."""
    slots = master_slots(cluster)
    assert sorted(slots) == sorted(p for _, p in cluster.nodes)  # three masters
    tags: dict[int, str] = {}
    for i in range(1000):
        tag = f"t{i}"
        slot = key_slot(tag.encode())
        for port, ranges in slots.items():
            if port not in tags and any(a <= slot <= b for a, b in ranges):
                tags[port] = tag
        if len(tags) == len(slots):
            return tags
    raise AssertionError("no tag found for every master")


async def test_connect_builds_a_cluster_client_that_answers(
    redis_cluster: RedisCluster, client: aioredis.RedisCluster
) -> None:
    assert is_cluster(client)
    assert await client.ping()
    masters = {(n.host, int(n.port)) for n in client.get_primaries()}
    assert masters == set(redis_cluster.nodes)


async def test_keys_of_each_tag_live_on_their_master(
    redis_cluster: RedisCluster, client: aioredis.RedisCluster
) -> None:
    tags = tag_per_master(redis_cluster)
    for port, tag in tags.items():
        await client.set(f"smsgw:{{{tag}}}:k", port)
    for port, tag in tags.items():
        assert await client.get(f"smsgw:{{{tag}}}:k") == str(port).encode()
        with redis_cluster.client(port) as node:  # the key is on that node itself
            assert node.get(f"smsgw:{{{tag}}}:k") == str(port).encode()


async def test_a_script_on_two_keys_of_one_tag_works(client: aioredis.RedisCluster) -> None:
    script = client.register_script(TWO_KEYS)
    assert await script(keys=["smsgw:{t}:a", "smsgw:{t}:b"], args=["v"]) == [b"smsgw:{t}:a", b"v"]
    assert await client.get("smsgw:{t}:b") == b"v"


async def test_a_script_call_loads_it_on_every_master(
    redis_cluster: RedisCluster, client: aioredis.RedisCluster
) -> None:
    script = client.register_script(TWO_KEYS + "-- loaded by NOSCRIPT")
    await client.script_flush()
    await script(keys=["{t}a", "{t}b"], args=["1"])  # NOSCRIPT, SCRIPT LOAD, EVALSHA
    for _, port in redis_cluster.nodes:
        with redis_cluster.client(port) as node:
            assert node.script_exists(script.sha) == [True]


async def test_a_pipeline_of_scripts_on_every_master_answers_in_order(
    redis_cluster: RedisCluster, client: aioredis.RedisCluster
) -> None:
    script = client.register_script(TWO_KEYS)
    await client.script_load(TWO_KEYS)
    tags = list(tag_per_master(redis_cluster).values()) * 2
    pipe = client.pipeline(transaction=False)
    for i, tag in enumerate(tags):
        await script(keys=[f"{{{tag}}}a", f"{{{tag}}}b"], args=[str(i)], client=pipe)
    results = await pipe.execute()
    assert results == [[f"{{{tag}}}a".encode(), str(i).encode()] for i, tag in enumerate(tags)]


async def test_a_pipeline_does_not_load_a_missing_script(client: aioredis.RedisCluster) -> None:
    """A cluster pipeline sends EVALSHA only: a script no master holds yet fails
    with NOSCRIPT (the caller loads it first, e.g. with one direct call)."""
    script = client.register_script(TWO_KEYS + "-- never loaded")
    await client.script_flush()
    pipe = client.pipeline(transaction=False)
    await script(keys=["{t}a", "{t}b"], args=["1"], client=pipe)
    with pytest.raises(NoScriptError):
        await pipe.execute()
    assert await client.exists("{t}a") == 0


async def test_scan_iter_finds_keys_on_every_master(
    redis_cluster: RedisCluster, client: aioredis.RedisCluster
) -> None:
    tags = tag_per_master(redis_cluster)
    for tag in tags.values():
        for j in range(5):
            await client.set(f"smsgw:{{{tag}}}:conn:{j}", 1)
    await client.set("other:{x}", 1)
    found = {k async for k in client.scan_iter(match="smsgw:*:conn:*", count=1000)}
    assert found == {f"smsgw:{{{t}}}:conn:{j}".encode() for t in tags.values() for j in range(5)}


async def test_a_script_on_keys_of_two_tags_is_refused(
    redis_cluster: RedisCluster, client: aioredis.RedisCluster
) -> None:
    """Refused and nothing written, but by two errors: a client's first command
    (it learns the slots then) goes unchecked and the server answers CROSSSLOT
    (ClusterCrossSlotError, a ResponseError); after that redis-py refuses before
    sending (RedisClusterException, which is no RedisError)."""
    keys = ["{a}x", "{b}x"]
    assert key_slot(b"{a}x") != key_slot(b"{b}x")
    cold = connect(redis_cluster.url)
    try:
        with pytest.raises(ClusterCrossSlotError):
            await cold.register_script(TWO_KEYS)(keys=keys, args=["1"])
    finally:
        await cold.aclose()
    script = client.register_script(TWO_KEYS)
    await client.ping()  # the client knows the slots now
    with pytest.raises(RedisClusterException, match="all keys must map to the same key slot"):
        await script(keys=keys, args=["1"])
    pipe = client.pipeline(transaction=False)
    with pytest.raises(RedisClusterException, match="all keys must map to the same key slot"):
        await script(keys=keys, args=["1"], client=pipe)
        await pipe.execute()
    assert await client.exists("{a}x") == 0 and await client.exists("{b}x") == 0


async def test_a_script_given_no_keys_cannot_reach_another_masters_key(
    redis_cluster: RedisCluster, client: aioredis.RedisCluster
) -> None:
    """A script called with keys=[] goes to whichever master redis-py picks (a
    random slot per call); a key named only in ARGV works on its own master and
    is an error on the others."""
    tags = tag_per_master(redis_cluster)
    sha = await client.script_load("return redis.call('GET', ARGV[1])")
    for owner, tag in tags.items():
        await client.set(f"{{{tag}}}k", tag)
        for node in client.get_primaries():
            call = client.execute_command("EVALSHA", sha, 0, f"{{{tag}}}k", target_nodes=node)
            if int(node.port) == owner:
                assert await call == tag.encode()
            else:
                with pytest.raises(ResponseError, match="non local key"):
                    await call


async def test_xreadgroup_reads_one_slot_per_call(
    redis_cluster: RedisCluster, client: aioredis.RedisCluster
) -> None:
    tags = list(tag_per_master(redis_cluster).values())
    lanes = [f"smsgw:{{{t}}}:lane" for t in tags]
    for lane in lanes:
        await client.xgroup_create(lane, "dispatch", id="0", mkstream=True)
        await client.xadd(lane, {"m": lane})
    with pytest.raises(RedisClusterException, match="all keys must map to the same key slot"):
        await client.xreadgroup("dispatch", "c1", dict.fromkeys(lanes, ">"), count=10)
    # One read per slot, pipelined: every master answers, in order.
    pipe = client.pipeline(transaction=False)
    for lane in lanes:
        pipe.xreadgroup("dispatch", "c1", {lane: ">"}, count=10)
    replies = await pipe.execute()
    assert [r[0][0] for r in replies] == [lane.encode() for lane in lanes]
    assert [r[0][1][0][1] for r in replies] == [{b"m": lane.encode()} for lane in lanes]


async def test_a_blocking_xreadgroup_wakes_on_a_new_entry(client: aioredis.RedisCluster) -> None:
    lane = "smsgw:{t}:lane"
    await client.xgroup_create(lane, "dispatch", id="$", mkstream=True)
    assert await client.xreadgroup("dispatch", "c1", {lane: ">"}, count=1, block=50) == []

    async def add_soon() -> None:
        await asyncio.sleep(0.2)
        await client.xadd(lane, {"m": "late"})

    adder = asyncio.create_task(add_soon())
    try:
        # Blocks far longer than the adder takes: returns with the entry, not empty.
        got = await client.xreadgroup("dispatch", "c1", {lane: ">"}, count=1, block=20_000)
    finally:
        await adder
    assert got[0][1][0][1] == {b"m": b"late"}


async def test_a_plain_url_with_cluster_true_finds_every_master(
    redis_cluster: RedisCluster,
) -> None:
    host, port = redis_cluster.nodes[1]
    store = Store.from_url(f"redis://{host}:{port}/0", cluster=True)
    try:
        await store.ping()
        assert is_cluster(store.redis)
        assert {(n.host, int(n.port)) for n in store.redis.get_primaries()} == set(
            redis_cluster.nodes)
    finally:
        await store.close()


async def test_unix_url_reaches_a_server_on_its_socket_and_db(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [str(redis_server_binary()), "--port", "0", "--unixsocket", str(sock),
         "--dir", str(tmp_path), "--save", "", "--appendonly", "no"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        with redis.Redis(unix_socket_path=str(sock), db=2, socket_connect_timeout=0.5) as probe:
            for _ in range(200):  # bounded: ~10 s
                try:
                    if probe.ping():
                        break
                except (redis.ConnectionError, FileNotFoundError):
                    await asyncio.sleep(0.05)
            client = connect(f"unix://{sock}?db=2")
            try:
                assert not is_cluster(client)
                await client.set("k", "over the socket")
            finally:
                await client.aclose()
            assert probe.get("k") == b"over the socket"  # in db 2
        with redis.Redis(unix_socket_path=str(sock), db=0) as db0:
            assert db0.get("k") is None
    finally:
        terminate(proc, 10)
    assert gone(proc.pid)


def cluster_processes(ports: list[int]) -> list[int]:
    """Pids of redis-server processes on this machine serving one of `ports`
    (a running redis-server's command line reads `redis-server 127.0.0.1:<port>
    [cluster]`)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or gone(int(proc.name)):
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"redis-server" in cmdline and any(f":{p}".encode() in cmdline for p in ports):
            found.append(int(proc.name))
    return found


def test_the_cluster_leaves_no_redis_server_behind(tmp_path: Path) -> None:
    """Created the other way (CLUSTER ADDSLOTS and MEET from redis-py), left
    by an exception: every node's process has ended."""
    with pytest.raises(RuntimeError, match="the test body failed"), \
            RedisCluster(tmp_path, create="commands") as cluster:
        ports = [p for _, p in cluster.nodes]
        pids = [p.pid for p in cluster.processes]
        assert len(ports) == 3
        assert sorted(cluster_processes(ports)) == sorted(pids)
        with cluster.client(ports[0]) as node:
            assert b"cluster_state:ok" in node.execute_command("CLUSTER", "INFO")
        raise RuntimeError("the test body failed")
    assert cluster.processes == []
    assert all(gone(pid) for pid in pids)
    assert cluster_processes(ports) == []
