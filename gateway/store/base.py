"""What every part of the Store stands on: its client, its shards, its
scripts, and the one way a shard script is called (KEYS[1..NK] are the
shard's keys, lib/shard.lua)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from gateway.store import scripts
from gateway.store.client import Client

T = TypeVar("T")


class StoreBase:
    """The state the job classes (messages, lanes, receipts, schedule,
    notify, lists, telemetry) share; `gateway.store.Store` composes them and
    sets it."""

    redis: Client
    shards: int
    # KEYS[1..NK] of shard k's script calls
    _shard_keys: list[list[str]]
    # name → every script this store registered (lua/<name>.lua)
    registered: dict[str, AsyncScript]

    def _register(self, name: str) -> AsyncScript:
        """Script lua/<name>.lua (gateway.store.scripts.load), registered with
        the client: Redis loads it at its first call."""
        script = self.redis.register_script(scripts.load(name))
        self.registered[name] = script
        return script

    def _call(self, script: AsyncScript, shard: int, keys: Sequence[str] = (),
              args: Sequence[str | bytes | int | float] = ()) -> Awaitable[object]:
        """One call of a shard script in `shard`."""
        return script(keys=[*self._shard_keys[shard], *keys], args=list(args))

    def _in(self, shard: int, keys: Sequence[str], args: list[str | bytes | int]
            ) -> tuple[list[str], list[str | bytes | int]]:
        """A call of a shard script in `shard`, for `_script_calls`."""
        return [*self._shard_keys[shard], *keys], args

    async def _script_calls(
        self, script: AsyncScript, calls: Sequence[tuple[list[str], list[str | bytes | int]]]
    ) -> list[object]:
        """Run calls of one script in one pipelined round trip (a call alone
        goes straight)."""
        if len(calls) == 1:
            keys, args = calls[0]
            return [await script(keys=keys, args=args)]
        return await self._scripts_calls([(script, keys, args) for keys, args in calls])

    async def _scripts_calls(
        self, calls: Sequence[tuple[AsyncScript, list[str], list[str | bytes | int]]]
    ) -> list[object]:
        """Run calls of any scripts in one pipelined round trip."""
        # EVALSHA straight on the pipeline: redis-py's script registration would
        # cost a SCRIPT EXISTS round trip on every request. A call answered
        # NOSCRIPT ran nothing (a restarted server or, on a cluster, a master
        # that never saw the script), so it alone is sent again after the script
        # is loaded (on every master); the others ran, and are not.
        out: list[object] = [None] * len(calls)
        todo = list(range(len(calls)))
        for _attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for i in todo:
                script, keys, args = calls[i]
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
            missing = []
            for i, reply in zip(todo, replies, strict=True):
                if isinstance(reply, NoScriptError):
                    missing.append(i)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    out[i] = reply
            if not missing:
                return out
            for script in {calls[i][0].sha: calls[i][0] for i in missing}.values():
                await self.redis.script_load(script.script)
            todo = missing
        raise NoScriptError("script could not be loaded")



def _ts(now: float | None = None) -> str:
    return f"{time.time() if now is None else now:.3f}"


def _by_shard(items: Iterable[T], shard: Callable[[T], int]
              ) -> dict[int, tuple[list[int], list[T]]]:
    """Items grouped by shard: shard → (their positions, the items)."""
    out: dict[int, tuple[list[int], list[T]]] = {}
    for pos, item in enumerate(items):
        group = out.get(k := shard(item))
        if group is None:
            group = out[k] = ([], [])
        group[0].append(pos)
        group[1].append(item)
    return out

