"""The one place a Redis client is built from `redis.url` (the forms:
gateway.core.redis_url): one server through a blocking connection pool, a
Redis Cluster through redis-py's own `RedisCluster`."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import SSLConnection, parse_url

from gateway.core.config import ConfigError
from gateway.core.redis_url import parse_redis_url

Client = aioredis.Redis | aioredis.RedisCluster

# Connections one client holds: for one server in all, on a cluster per node.
MAX_CONNECTIONS = 128
# Seconds a caller waits for a free connection of the one-server pool.
POOL_TIMEOUT = 30.0
# redis-py 8 defaults to 5 s, which a pipelined 10,000-message batch can exceed
# on a busy host (AOF rewrite, shared cores); the request then failed after its
# messages were written.
SOCKET_TIMEOUT = 30.0


def connect(
    url: str,
    *,
    cluster: bool = False,
    max_connections: int = MAX_CONNECTIONS,
    timeout: float = POOL_TIMEOUT,
    socket_timeout: float = SOCKET_TIMEOUT,
) -> Client:
    """A client for `url` (with `cluster`: a plain redis:// or rediss:// url
    names one node of a cluster). Options in the url's query win over these
    arguments, as redis-py's own from_url has it. Connects lazily: a Redis that
    is away shows at the first command, not here. A url that is no form this
    takes raises ConfigError naming `redis.url`."""
    try:
        form = parse_redis_url(url, cluster)
    except ValueError as exc:
        raise ConfigError([f"redis.url: {exc}"]) from None
    try:
        if not form.cluster:
            # A blocking pool: under a burst, callers wait (up to `timeout`) for a
            # free connection instead of failing with "Too many connections".
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=timeout,
                socket_timeout=socket_timeout,
            )
            return aioredis.Redis(connection_pool=pool)
        # redis-py's cluster client has no blocking pool: a node that holds
        # `max_connections` in use fails the next command with MaxConnectionsError.
        options: dict[str, Any] = {"socket_timeout": socket_timeout}
        options.update(parse_url(form.url))
        for name in ("host", "port", "db"):
            options.pop(name, None)
        if options.pop("connection_class", None) is SSLConnection:
            options["ssl"] = True
        return aioredis.RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in form.nodes],
            max_connections=max_connections, **options,
        )
    except ValueError as exc:  # redis-py's own check: a query value it cannot cast
        raise ConfigError([f"redis.url: {exc}"]) from None
    except TypeError as exc:
        raise ConfigError([f"redis.url: a query option the cluster client does not take "
                           f"({exc})"]) from None


def is_cluster(client: Client) -> bool:
    """Whether `client` talks to a Redis Cluster: each script call and each
    pipeline command then goes to the master of its keys' slot."""
    return isinstance(client, aioredis.RedisCluster)
