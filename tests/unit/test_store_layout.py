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
