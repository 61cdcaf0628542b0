"""The package layout: imports inside gateway/ point one way along the flow."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = ROOT / "gateway"

# The stage packages of gateway/, lowest first (docs/architecture.md, "Packages
# and the import graph"). A module may import its own package, any package of a
# lower rank and protocols/; a package of the same rank or higher is a
# dependency running backwards. Nothing under gateway/ imports loadtest/ or tests/.
RANKS = {
    "core": 0,
    "store": 1,
    "admission": 2, "connectors": 2,
    "notify": 3,
    "receipts": 4,
    "ingress": 5, "dispatch": 5,
    "run": 6,
}
FORBIDDEN = ("loadtest", "tests")


def _imported(tree: ast.Module, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in the module, anywhere in it
    (function-local and TYPE_CHECKING imports count), relative ones resolved."""
    package = module.split(".")[:-1] if not module.endswith("__init__") else module.split(".")
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            if name == "gateway":  # `from gateway import store`
                out += [(node.lineno, f"gateway.{alias.name}") for alias in node.names]
    return out


def backward_imports(root: Path = GATEWAY) -> list[str]:
    """One line per import under `root` (a gateway/ tree) that breaks RANKS."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts)
        parts = rel.parts[1:]
        if not parts or parts == ("__init__",):
            own = None  # gateway/__init__.py itself: below every package
        else:
            own = parts[0]
            if own not in RANKS:
                problems.append(f"{module}: package {own!r} has no rank in RANKS")
                continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, name in _imported(tree, module):
            top, _, rest = name.partition(".")
            where = f"{rel}.py:{line}: imports {name}"
            if top in FORBIDDEN:
                problems.append(f"{where} (nothing under gateway/ imports {top}/)")
            elif top == "gateway" and rest:
                target = rest.split(".")[0]
                if target == own:
                    continue
                if target not in RANKS:
                    problems.append(f"{where} (package {target!r} has no rank)")
                elif own is None or RANKS[target] >= RANKS[own]:
                    problems.append(
                        f"{where} ({target}, rank {RANKS[target]}, is not below "
                        f"{own}, rank {RANKS.get(own, -1) if own else 'root'})"
                    )
    return problems


def test_imports_in_gateway_point_down_the_ranks() -> None:
    assert backward_imports() == []


def test_a_backward_import_is_found(tmp_path: Path) -> None:
    """The check itself can fail: a copy of the rules' shapes, each broken once."""
    tree = tmp_path / "gateway"
    (tree / "core").mkdir(parents=True)
    (tree / "store").mkdir()
    (tree / "run").mkdir()
    (tree / "core" / "ok.py").write_text("from gateway.core import model\nimport protocols.smpp\n")
    (tree / "core" / "up.py").write_text("def f():\n    from gateway.store import Store\n")
    (tree / "store" / "side.py").write_text("from ..run import cli\n")
    (tree / "store" / "sim.py").write_text("import loadtest.smsc_sim\n")
    (tree / "run" / "down.py").write_text("from gateway.store import Store\n"
                                         "from gateway import core\n")
    (tree / "extra").mkdir()
    (tree / "extra" / "x.py").write_text("")
    found = backward_imports(tree)
    assert sorted(line.split(":")[0] for line in found) == [
        "gateway.extra.x", "gateway/core/up.py", "gateway/store/side.py", "gateway/store/sim.py",
    ], found
