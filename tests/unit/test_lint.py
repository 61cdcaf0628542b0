"""The linters are part of the suite, so CI (which runs only the README's test
command) fails on a ruff finding or a mypy --strict error in protocols/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)


def test_ruff_finds_nothing() -> None:
    out = run("ruff", "check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_protocols_pass_mypy_strict() -> None:
    out = run("mypy", "--strict", "protocols")
    assert out.returncode == 0, out.stdout + out.stderr
