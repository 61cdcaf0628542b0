"""The forms `redis.url` takes, read without touching Redis, so the config
check (`smsgw check-config`) and the one place a client is built
(`gateway.store.client.connect`) refuse the same URLs with the same words.

- `redis://[user:password@]host[:port][/db]` and `rediss://…` (TLS): one server.
- `unix:///path/to/redis.sock[?db=N]`: one server on a Unix socket.
- `redis+cluster://[user:password@]h1:p1,h2:p2[,…]` and `rediss+cluster://…`:
  a Redis Cluster, the hosts its startup nodes (any one that answers tells the
  client the rest).
- `redis://host:port` or `rediss://…` with `redis.cluster = true`: a cluster
  with that one startup node.

A cluster has only database 0, and no Unix socket (its nodes announce TCP
addresses to each other and to clients).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

DEFAULT_PORT = 6379
SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True)
class RedisUrl:
    """What a `redis.url` asks for. `url` is the single-server URL redis-py
    reads (for a cluster: the first node's, carrying the credentials and the
    query options every node's connections share); `nodes` are a cluster's
    startup nodes, empty for one server."""

    url: str
    cluster: bool
    tls: bool
    nodes: tuple[tuple[str, int], ...] = ()


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def parse_redis_url(url: str, cluster: bool = False) -> RedisUrl:
    """The form of `url`; ValueError saying what is wrong (without the URL,
    which may hold a password)."""
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SINGLE_SCHEMES + CLUSTER_SCHEMES:
        raise ValueError(
            "scheme must be one of redis://, rediss://, unix://, redis+cluster://, "
            "rediss+cluster://"
        )
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced [ in an IPv6 host
        raise ValueError(f"not a valid URL ({exc})") from None
    if parts.fragment:
        raise ValueError("a Redis URL has no #fragment")
    if scheme == "unix":
        return _unix(url, parts.netloc, parts.path, parts.query, cluster)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    prefix = userinfo + at
    tls = scheme.startswith("rediss")
    if scheme in CLUSTER_SCHEMES:
        nodes = tuple(_node(h) for h in hosts.split(","))
        _cluster_db(parts.path, parts.query)
        base = "rediss" if tls else "redis"
        host, port = nodes[0]
        host = f"[{host}]" if ":" in host else host
        query = f"?{parts.query}" if parts.query else ""
        return RedisUrl(f"{base}://{prefix}{host}:{port}{query}", True, tls, nodes)
    if "," in hosts:
        raise ValueError(
            f"several hosts need {scheme}+cluster:// (a cluster's startup nodes)"
        )
    node = _node(hosts, required=False)
    _db(parts.path, parts.query)
    if cluster:
        _cluster_db(parts.path, parts.query)
        if node is None:
            raise ValueError("redis.cluster = true needs host:port of a cluster node")
        return RedisUrl(url, True, tls, (node,))
    return RedisUrl(url, False, tls)


def _unix(url: str, netloc: str, path: str, query: str, cluster: bool) -> RedisUrl:
    if cluster:
        raise ValueError("a cluster is reached over TCP, not a unix:// socket")
    if netloc.rpartition("@")[2]:
        raise ValueError("unix:// takes a path, not a host: unix:///path/to/redis.sock")
    if not path or path == "/":
        raise ValueError("unix:// needs the socket's path: unix:///path/to/redis.sock")
    _db("", query)
    return RedisUrl(url, False, False)


def _node(text: str, required: bool = True) -> tuple[str, int] | None:
    """host, host:port, [v6] or [v6]:port → (host, port)."""
    if not text:
        if required:
            raise ValueError("a cluster URL lists host:port of each startup node, "
                             "separated by commas; one is empty")
        return None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not a host[:port]")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = text.partition(":")
        if ":" in port_text:
            raise ValueError(f"{text!r}: write an IPv6 host in brackets, [::1]:6379")
    if not host:
        raise ValueError(f"{text!r} has no host")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def _db(path: str, query: str) -> None:
    """A database number in the path (/N) or the query (?db=N) must be one."""
    number = path.strip("/")
    if number and not number.isdigit():
        raise ValueError(f"the path must be a database number (/0), not {path!r}")
    for value in parse_qs(query).get("db", []):
        if not value.isdigit():
            raise ValueError(f"db must be a database number, not {value!r}")


def _cluster_db(path: str, query: str) -> None:
    _db(path, query)
    numbers = [path.strip("/") or "0", *parse_qs(query).get("db", [])]
    if any(int(n) != 0 for n in numbers):
        raise ValueError("a cluster has only database 0")
