"""The Lua scripts of the store (`gateway/store/lua/`), and the values they
share with Python.

A script is one `.lua` file; what several share is a fragment under `lib/`,
taken in by a line ``--#include lib/<name>.lua`` (resolved recursively, each
fragment once per script, where it is first named). Values the Python side
owns are never spelled in a `.lua` file: `load` puts one generated block of
``local NAME = value`` lines at the head of each script, for the names it
uses (CONSTANTS), so each has one definition, here or in `gateway.core.model`
and `gateway.store.keys`. Key names come from keys.py as KEYS and ARGV: a
shard script includes ``lib/shard.lua``, which names keys.shard_keys(k) as
KEYS[1..NK].

The source `load` returns is what Redis runs (its SHA-1 is the script's
EVALSHA name), the same on every call and in every process.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from importlib.resources import files

from gateway.core.model import ACCEPTED, EVENT_BITS, FINAL_STATUSES, QUEUED, SCHEDULED, SUBMITTED
from gateway.store.keys import GROUP, SHARD_KEY_NAMES

LUA = files("gateway.store").joinpath("lua")
INCLUDE = re.compile(r"^--#include (\S+)\n", re.MULTILINE)

# Messages of one enqueue call that share a lane share a lane entry, up to this
# many: a stream entry costs Redis about as much to add, read (XREADGROUP
# propagates an XCLAIM per entry to the AOF) and acknowledge as all the rest of
# a message's admission.
LANE_GROUP = 32
# How far (ms of entry id time) the oldest lane entry in flight may lag the last
# one read before acknowledged entries are deleted one by one (see ack.lua).
TRIM_SPAN_MS = 2000
# A status's place in the life cycle. Statuses only move forward, so a status
# line's field, h<rank>, is written once and also says where the line goes in
# the history. Stored in field names: never renumber (a message has one final
# status, so they share a rank).
HISTORY_RANK = {ACCEPTED: 0, SCHEDULED: 1, QUEUED: 2, SUBMITTED: 3,
                **dict.fromkeys(sorted(FINAL_STATUSES), 4)}
# Marks a receipt parked in a correlation key until its submit_sm_resp is seen
# (a correlation itself is "<id>|<part>", and ids never start with it).
PARKED = "~"
# A status callback's message fields, read by the claim that leases its queue:
# record, connector, error, the history lines of admission, submitted and the
# finals, parts as the connector cut the text, and the SMSC ids of parts 0 and
# 1. The claim appends the ids of parts 2..n of a message of more parts.
WH_FIELDS = ("r", "c", "e", "h", "h2", "h3", "h4", "n", "i0", "i1")
# First byte of a queue entry that carries its whole body (an MO message).
WH_RENDERED = b"!"
# Shard keys every shard script gets first (lib/shard.lua).
NK = len(SHARD_KEY_NAMES)

Lua = int | str | bool | Sequence["Lua"] | Mapping[str, "Lua"]

# The names the scripts know these values by.
CONSTANTS: dict[str, Lua] = {
    "NK": NK,
    "FINAL": dict.fromkeys(sorted(FINAL_STATUSES), True),
    "RANK": HISTORY_RANK,
    "HFIELD": {status: f"h{rank}" for status, rank in HISTORY_RANK.items()},
    "EVENT_BIT": EVENT_BITS,
    "PARKED": PARKED,
    "PARKED_BYTE": ord(PARKED),
    "GROUP": GROUP,
    "LANE_GROUP": LANE_GROUP,
    "TRIM_SPAN_MS": TRIM_SPAN_MS,
    "WH_FIELDS": WH_FIELDS,
    "WH_FIELD_AT": {name: i for i, name in enumerate(WH_FIELDS, 1)},
    "WH_RENDERED_BYTE": WH_RENDERED[0],
}


def lua(value: Lua) -> str:
    """A Lua expression of `value`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        assert "'" not in value and "\\" not in value and "\n" not in value
        return f"'{value}'"
    if isinstance(value, Mapping):
        assert all(k.isidentifier() for k in value)
        return "{" + ", ".join(f"{k}={lua(v)}" for k, v in value.items()) + "}"
    return "{" + ", ".join(lua(v) for v in value) + "}"


def source(path: str) -> str:
    """The text of one `.lua` file, `path` relative to lua/ (with its .lua)."""
    return LUA.joinpath(*path.split("/")).read_text(encoding="utf-8")


def expand(path: str, seen: set[str] | None = None) -> str:
    """The file at `path` with its includes in place: each fragment where it
    is first named (its own includes before it), later mentions dropped."""
    seen = set() if seen is None else seen
    seen.add(path)

    def include(m: re.Match[str]) -> str:
        name = m.group(1)
        return "" if name in seen else expand(name, seen)

    text = source(path)
    return INCLUDE.sub(include, text if text.endswith("\n") else text + "\n")


def includes(path: str) -> list[str]:
    """The fragments `path` names directly, in order."""
    return INCLUDE.findall(source(path))


@functools.cache
def load(name: str) -> str:
    """The source Redis runs for script `name` (its file is lua/<name>.lua):
    the constants it uses, then the file with its includes in place."""
    body = expand(f"{name}.lua")
    code = re.sub(r"--.*", "", body)  # a comment naming a constant does not need it
    used = [n for n in CONSTANTS if re.search(rf"\b{n}\b", code)]
    return "".join(f"local {n} = {lua(CONSTANTS[n])}\n" for n in used) + body
