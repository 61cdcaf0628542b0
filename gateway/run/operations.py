"""Operator commands that talk to a running gateway's Redis: status and the
dead-letter queue. They find the embedded Redis through the URL file the
supervisor writes into the data dir."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from gateway.core.config import Settings
from gateway.core.model import new_id
from gateway.store import REDIS_AWAY, Store

URL_FILE = "redis.url"


def redis_url_file(settings: Settings) -> Path:
    return settings.data_path(URL_FILE)


def find_redis_url(settings: Settings) -> str:
    if settings.redis.url:
        return settings.redis.url
    path = redis_url_file(settings)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise SystemExit(
            f"no running gateway found: {path} does not exist (is `smsgw run` running "
            "with this config and data dir?)"
        ) from None


async def _status(settings: Settings) -> dict[str, Any]:
    store = Store.from_url(find_redis_url(settings), cluster=settings.redis.cluster,
                           shards=settings.redis.shards)
    try:
        depths = await store.lane_depths(settings.connectors)
        return {
            "lanes": depths,
            "scheduled_or_deferred": await store.delayed_count(),
            "dead_letters": await store.dead_letter_count(),
            "webhooks": await store.webhook_backlog(),
            "connectors": await store.connector_reports(),
        }
    finally:
        await store.close()


async def _dlq_list(settings: Settings, count: int) -> list[dict[str, str]]:
    store = Store.from_url(find_redis_url(settings), cluster=settings.redis.cluster,
                           shards=settings.redis.shards)
    try:
        return await store.dead_letters(count)
    finally:
        await store.close()


async def _dlq_replay(settings: Settings, ids: list[str], replay_all: bool) -> list[dict[str, str]]:
    """Queue a fresh copy of each dead-lettered message (final statuses never
    change, so the copy gets a new id that points back at the original)."""
    store = Store.from_url(find_redis_url(settings), settings.messages.receipt_grace,
                           cluster=settings.redis.cluster, shards=settings.redis.shards)
    out = []
    try:
        for row in await store.dead_letters(10_000):
            if not replay_all and row["m"] not in ids:
                continue
            state = await store.get(row["m"])
            if state is None:
                continue
            old = state.message
            now = time.time()
            copy = dataclasses.replace(
                old,
                id=new_id(),
                created_at=now,
                expires_at=now + max(60.0, old.expires_at - old.created_at),
                send_at=None,
                extra={**old.extra, "replay_of": old.id},
            )
            await store.enqueue([copy])
            await store.remove_dead_letter(row["entry"])
            out.append({"replayed": old.id, "new_id": copy.id})
    finally:
        await store.close()
    return out


def _unreachable(settings: Settings, exc: BaseException) -> int:
    """One line instead of a traceback: the gateway (its Redis) is not running."""
    url = settings.redis.url or find_redis_url(settings)
    print(f"no running gateway: its Redis at {url} is not reachable ({exc})", file=sys.stderr)
    return 1


def status(settings: Settings) -> int:
    try:
        report = asyncio.run(_status(settings))
    except REDIS_AWAY as exc:
        return _unreachable(settings, exc)
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


def dlq_list(settings: Settings, count: int) -> int:
    try:
        rows = asyncio.run(_dlq_list(settings, count))
    except REDIS_AWAY as exc:
        return _unreachable(settings, exc)
    for row in rows:
        print(orjson.dumps(row).decode())
    return 0


def dlq_replay(settings: Settings, ids: list[str], replay_all: bool) -> int:
    if not ids and not replay_all:
        print("name message ids to replay, or --all")
        return 2
    try:
        rows = asyncio.run(_dlq_replay(settings, ids, replay_all))
    except REDIS_AWAY as exc:
        return _unreachable(settings, exc)
    for row in rows:
        print(orjson.dumps(row).decode())
    return 0 if rows or replay_all else 1
