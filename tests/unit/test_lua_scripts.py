"""The store's Lua files (gateway/store/lua/): each is used, each include
resolves, and none spells a key (keys come from gateway.store.keys as KEYS
and ARGV)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.run.embedded_redis import free_port
from gateway.store import Store, scripts
from gateway.store.keys import PREFIX, SHARD_KEY_NAMES

LUA = Path(scripts.__file__).parent / "lua"
FILES = sorted(p.relative_to(LUA).as_posix() for p in LUA.rglob("*.lua"))


@pytest.fixture
def store() -> Iterator[Store]:
    # Registering a script sends nothing: no server needs to listen.
    yield Store(aioredis.Redis(host="127.0.0.1", port=free_port()))


def used_by(path: str) -> set[str]:
    """`path` and every fragment it takes in, at any depth."""
    out, todo = set(), [path]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo += scripts.includes(p)
    return out


def test_every_lua_file_is_used_by_a_registered_script(store: Store) -> None:
    assert len(FILES) > 30 and "lib/shard.lua" in FILES  # the walk found them
    used = set().union(*(used_by(f"{name}.lua") for name in store.registered))
    assert sorted(set(FILES) - used) == []
    assert sorted(used - set(FILES)) == []


def test_every_include_names_a_file() -> None:
    missing = [(f, i) for f in FILES for i in scripts.includes(f) if i not in FILES]
    assert missing == []
    for f in FILES:
        assert "--#include" not in scripts.expand(f)


def test_no_lua_file_spells_a_key() -> None:
    spelled = [f for f in FILES if PREFIX in (LUA / f).read_text()]
    assert spelled == []


def test_a_script_takes_each_fragment_once_after_its_own_includes() -> None:
    # submitted.lua: shard, status (which takes message, which takes shard),
    # part_final (which takes status again)
    source = scripts.load("submitted")
    # each fragment's first line of code (after its comment and includes)
    heads = [next(line for line in (LUA / f).read_text().splitlines()
                  if line and not line.startswith("--"))
             for f in ("lib/shard.lua", "lib/message.lua", "lib/status.lua",
                       "lib/part_final.lua")]
    assert [source.count(head) for head in heads] == [1, 1, 1, 1], heads
    at = [source.index(head) for head in heads]
    assert at == sorted(at)


def test_constants_come_from_python_once_and_only_those_used() -> None:
    source = scripts.load("ack")
    block = source[: source.index("--")].splitlines()
    assert block == ["local NK = 13", "local GROUP = 'dispatch'", "local TRIM_SPAN_MS = 2000"]
    assert scripts.load("gcra") == (LUA / "gcra.lua").read_text()  # a keyless script
    assert scripts.load("ack") is source  # loaded once
    for f in FILES:
        code = re.sub(r"--.*", "", (LUA / f).read_text())
        for name in scripts.CONSTANTS:
            assert not re.search(rf"local [\w, ]*\b{name}\b[\w, ]* =", code), (f, name)


def test_the_shard_header_names_every_shard_key() -> None:
    head = re.search(r"local ([\w, ]+) = unpack\(KEYS, 1, NK\)",
                     (LUA / "lib/shard.lua").read_text())
    assert head is not None
    assert len(head.group(1).split(", ")) == len(SHARD_KEY_NAMES) == scripts.NK
