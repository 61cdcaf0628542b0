"""gateway/store owns Redis: no other module of the gateway talks to it."""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
STORE = GATEWAY / "store"


def redis_imports(path: Path) -> list[str]:
    """`import redis...` and `from redis... import` lines of a module, anywhere in it
    (a function-level import counts too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(n == "redis" or n.startswith("redis.") for n in names):
            found.append(f"{path.relative_to(GATEWAY.parent)}:{node.lineno}")
    return found


def test_only_the_store_imports_redis() -> None:
    modules = [p for p in GATEWAY.rglob("*.py") if STORE not in p.parents]
    assert len(modules) > 20  # the walk found the gateway's modules
    offenders = [line for p in modules for line in redis_imports(p)]
    assert offenders == []


def test_shard_tags_spread_over_the_slots_for_any_power_of_two() -> None:
    from redis.crc import key_slot

    from gateway.store.keys import MAX_SHARDS, TAGS, base, key_shard, lane_key, msg_key

    assert MAX_SHARDS == 256 and len(set(TAGS)) == 256
    for shards in (2, 4, 16, 64, 256):
        slots = sorted(key_slot(TAGS[k].encode()) for k in range(shards))
        width = 16384 // shards
        # one tag in each of the `shards` equal ranges of slots
        assert [s // width for s in slots] == list(range(shards))
    # three masters own thirds of the slots: 16 shards give each of them 5 or 6
    thirds = [0, 0, 0]
    for k in range(16):
        thirds[min(2, key_slot(TAGS[k].encode()) * 3 // 16384)] += 1
    assert sorted(thirds) == [5, 5, 6]
    # a key's shard is found from it, a message's from its id
    for k in (0, 7, 255):
        assert key_shard(lane_key(k, "sim", "otp")) == k
        assert key_slot(base(k).encode()) == key_slot(TAGS[k].encode())
    message_id = "0123456789ab07" + "0" * 14
    assert key_shard(msg_key(message_id)) == 7


def test_ids_carry_their_shard() -> None:
    from gateway.core.model import id_sequence, new_id, shard_of, use_shards

    assert shard_of(new_id(5)) == 5 and shard_of(id_sequence(9)()) == 9
    use_shards(4)
    try:
        assert {shard_of(new_id()) for _ in range(2000)} <= {0, 1, 2, 3}
    finally:
        use_shards(1)
    assert shard_of("r1") == 0 and shard_of("not-an-id-at-all") == 0
