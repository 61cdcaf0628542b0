"""Suite-wide guards.

A run that executes no test must fail: pytest already exits 5 when nothing is
collected, and this hook also fails a run in which every test was skipped or
deselected, so a green CI always means tests actually ran.
"""

from __future__ import annotations

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter is not None else 0
    if exitstatus == 0 and passed == 0:
        session.exitstatus = 1
