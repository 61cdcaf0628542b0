"""`redis.url`'s forms: the client each one builds (no connection is made until
a command) and the config errors for the ones it refuses, named by key path."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import (
    BlockingConnectionPool,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

from gateway.core.config import ConfigError, RedisSettings, load_settings
from gateway.store import Store
from gateway.store.client import Client, connect, is_cluster
from tests.unit.test_config import GOOD


@pytest.fixture
async def built() -> AsyncIterator[list[Client]]:
    """Clients a test builds, closed after it."""
    clients: list[Client] = []
    yield clients
    for client in clients:
        await client.aclose()


def single(built: list[Client], url: str) -> aioredis.Redis:
    client = connect(url)
    built.append(client)
    assert isinstance(client, aioredis.Redis) and not is_cluster(client)
    return client


def cluster(built: list[Client], url: str, **kw: bool) -> aioredis.RedisCluster:
    client = connect(url, **kw)
    built.append(client)
    assert isinstance(client, aioredis.RedisCluster) and is_cluster(client)
    return client


async def test_redis_url_is_one_server_through_a_blocking_pool(built: list[Client]) -> None:
    client = single(built, "redis://10.1.2.3:6390/2")
    pool = client.connection_pool
    assert isinstance(pool, BlockingConnectionPool)
    assert pool.max_connections == 128 and pool.timeout == 30
    kw = pool.connection_kwargs
    assert (kw["host"], kw["port"], kw["db"], kw["socket_timeout"]) == ("10.1.2.3", 6390, 2, 30)
    assert pool.connection_class is Connection


async def test_rediss_url_is_tls_with_its_query_options(built: list[Client]) -> None:
    client = single(built, "rediss://u:p%40ss@db.example:6380/0?ssl_ca_certs=/etc/ca.pem")
    pool = client.connection_pool
    assert pool.connection_class is SSLConnection
    kw = pool.connection_kwargs
    assert (kw["username"], kw["password"], kw["ssl_ca_certs"]) == ("u", "p@ss", "/etc/ca.pem")


async def test_unix_url_is_a_socket_with_its_db(built: list[Client]) -> None:
    client = single(built, "unix:///run/redis/redis.sock?db=3")
    pool = client.connection_pool
    assert pool.connection_class is UnixDomainSocketConnection
    assert (pool.connection_kwargs["path"], pool.connection_kwargs["db"]) == (
        "/run/redis/redis.sock", 3)


async def test_a_query_option_wins_over_the_default(built: list[Client]) -> None:
    client = single(built, "redis://127.0.0.1:6379/0?socket_timeout=5")
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 5


async def test_cluster_url_lists_the_startup_nodes(built: list[Client]) -> None:
    client = cluster(built, "redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002")
    assert [(n.host, n.port) for n in client.startup_nodes] == [
        ("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)]
    assert all(n.max_connections == 128 for n in client.startup_nodes)
    kw = client.connection_kwargs
    assert kw["socket_timeout"] == 30 and kw["connection_class"] is Connection


async def test_rediss_cluster_url_is_tls_with_credentials(built: list[Client]) -> None:
    client = cluster(built, "rediss+cluster://user:secret@h1:7000,h2?ssl_cert_reqs=none")
    assert [n.name for n in client.startup_nodes] == ["h1:7000", "h2:6379"]
    kw = client.connection_kwargs
    assert kw["connection_class"] is SSLConnection and kw["ssl_cert_reqs"] == "none"
    assert (kw["username"], kw["password"]) == ("user", "secret")


@pytest.mark.parametrize("url", ["redis://10.0.0.1:7000", "redis://10.0.0.1:7000/0"])
async def test_a_redis_url_with_cluster_true_is_a_cluster(built: list[Client], url: str) -> None:
    client = cluster(built, url, cluster=True)
    assert [n.name for n in client.startup_nodes] == ["10.0.0.1:7000"]


async def test_store_from_url_builds_through_connect() -> None:
    store = Store.from_url("redis+cluster://10.0.0.1:7000", 60.0)
    one = Store.from_url("redis://10.0.0.1:7000/0", cluster=True)
    plain = Store.from_url("redis://10.0.0.1:7000/0")
    try:
        assert is_cluster(store.redis) and is_cluster(one.redis) and not is_cluster(plain.redis)
        assert store.receipt_grace == 60.0
    finally:
        for s in (store, one, plain):
            await s.close()


@pytest.mark.parametrize(
    ("url", "cluster_flag", "expected"),
    [
        ("http://127.0.0.1:6379", False, "scheme must be one of redis://"),
        ("127.0.0.1:6379", False, "scheme must be one of redis://"),
        ("redis+cluster://", False, "one is empty"),
        ("redis+cluster://h1:7000,,h2:7001", False, "one is empty"),
        ("redis+cluster://h1:seven", False, "'h1:seven': the port must be a number"),
        ("redis+cluster://h1:70000", False, "the port must be a number from 1 to 65535"),
        ("redis+cluster://::1:7000", False, "write an IPv6 host in brackets"),
        ("redis+cluster://[::1:7000", False, "not a valid URL"),
        ("redis+cluster://h1:7000/1", False, "a cluster has only database 0"),
        ("redis+cluster://h1:7000?db=2", False, "a cluster has only database 0"),
        ("redis://h1:7000,h2:7001", False, "several hosts need redis+cluster://"),
        ("redis://h1:6379/zero", False, "the path must be a database number"),
        ("redis://h1:6379/1", True, "a cluster has only database 0"),
        ("redis:///0", True, "needs host:port of a cluster node"),
        ("unix:///run/redis.sock", True, "not a unix:// socket"),
        ("unix://", False, "unix:// needs the socket's path"),
        ("unix://localhost/run/redis.sock", False, "unix:// takes a path, not a host"),
        ("unix:///run/redis.sock?db=x", False, "db must be a database number"),
        # redis-py's own checks of query options
        ("redis+cluster://h1:7000?socket_timeout=soon", False, "socket_timeout"),
        ("redis+cluster://h1:7000?no_such_option=1", False, "no_such_option"),
    ],
)
def test_a_url_connect_refuses_is_a_config_error_on_redis_url(
    url: str, cluster_flag: bool, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        connect(url, cluster=cluster_flag)
    (line,) = info.value.errors
    assert line.startswith("redis.url: ") and expected in line, line


def test_the_error_does_not_show_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        connect("redis+cluster://admin:s3cret@h1:7000,h2:bad")
    assert "s3cret" not in str(info.value) and "'h2:bad'" in str(info.value)


# --- the [redis] section ---------------------------------------------------------


def settings_with(tmp_path: Path, redis_section: str, environ: dict[str, str] | None = None,
                  ) -> RedisSettings:
    path = tmp_path / "gw.toml"
    path.write_text(GOOD + "[redis]\n" + redis_section)
    return load_settings(path, environ=environ or {}).redis


@pytest.mark.parametrize(
    ("section", "on_cluster", "shards"),
    [
        ("", False, 1),
        ('url = "redis://127.0.0.1:6379/0"\n', False, 1),
        ('url = "unix:///run/redis.sock"\nshards = 8\n', False, 8),
        ('url = "redis+cluster://h1:7000,h2:7001"\n', True, 16),
        ('url = "redis://h1:7000"\ncluster = true\n', True, 16),
        ('url = "rediss+cluster://h1:7000"\nshards = 256\n', True, 256),
        ('url = "redis+cluster://h1:7000"\nshards = 1\n', True, 1),
    ],
)
def test_shards_default_to_1_on_one_server_and_16_on_a_cluster(
    tmp_path: Path, section: str, on_cluster: bool, shards: int
) -> None:
    redis = settings_with(tmp_path, section)
    assert (redis.on_cluster, redis.shards) == (on_cluster, shards)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("shards = 0\n", "redis.shards: Input should be greater than or equal to 1"),
        ('url = "redis+cluster://h:1"\nshards = 257\n',
         "redis.shards: Input should be less than or equal to 256"),
        ('url = "http://h:6379"\n', "redis.url: scheme must be one of redis://"),
        ('url = "redis+cluster://h1:7000,"\n', "redis.url: a cluster URL lists host:port"),
        ('url = "unix:///run/redis.sock"\ncluster = true\n',
         "redis.url: a cluster is reached over TCP"),
        ("cluster = true\n", "redis.url: redis.cluster = true needs the url of a cluster node"),
    ],
)
def test_redis_section_errors_name_their_key_path(
    tmp_path: Path, section: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        settings_with(tmp_path, section)
    (line,) = info.value.errors
    assert line.startswith(expected), line


def test_an_env_override_of_shards_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        settings_with(tmp_path, "", environ={"SMSGW_REDIS__SHARDS": "300"})
    assert info.value.errors == [
        "SMSGW_REDIS__SHARDS → redis.shards: Input should be less than or equal to 256"]


def test_check_config_prints_the_redis_url_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD + '[redis]\nurl = "redis+cluster://h1:7000,h2:x"\nshards = 0\n')
    result = subprocess.run(
        [sys.executable, "-m", "gateway.run.cli", "check-config", "-c", str(bad)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "config error: redis.url: 'h2:x': the port must be a number from 1 to 65535" in lines
    assert any(line.startswith("config error: redis.shards:") for line in lines)
    assert "Traceback" not in result.stderr
