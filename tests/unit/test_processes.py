"""A worker's identity, and when another process may call it certainly dead:
only then are its lane entries taken over at once (gateway/dispatch/takeover.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from gateway.core.processes import certainly_dead, consumer_name, identity, start_time
from gateway.dispatch.takeover import dead

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(SLEEPER)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_the_identity_names_boot_pid_namespace_uid_pid_and_start_time() -> None:
    me = identity()
    assert set(me) == {"boot", "pidns", "uid", "pid", "start"}
    assert me["boot"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert me["pidns"] == os.readlink("/proc/self/ns/pid")
    assert me["uid"] == os.getuid() and me["pid"] == os.getpid()
    assert me["start"] == start_time(os.getpid()) and isinstance(me["start"], int)
    assert consumer_name().endswith(f"-{os.getpid()}")


def test_a_running_process_is_not_dead(child: subprocess.Popen[bytes]) -> None:
    assert not certainly_dead(identity())  # this very process
    assert not certainly_dead(identity(child.pid))


def test_a_process_that_ended_is_dead(child: subprocess.Popen[bytes]) -> None:
    record = identity(child.pid)
    child.kill()
    child.wait()
    assert certainly_dead(record)


def test_a_zombie_is_dead(child: subprocess.Popen[bytes]) -> None:
    record = identity(child.pid)
    child.kill()
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped
    assert start_time(child.pid) == record["start"]
    assert certainly_dead(record)


def test_a_reused_pid_does_not_keep_a_dead_process_alive() -> None:
    """Our pid, but the recorded process started at another time: not us."""
    record = {**identity(), "start": int(identity()["start"]) - 1}
    assert certainly_dead(record)


def test_a_process_started_before_another_boot_or_in_another_pid_namespace_is_not_judged(
    child: subprocess.Popen[bytes],
) -> None:
    record = identity(child.pid)
    child.kill()
    child.wait()
    assert not certainly_dead({**record, "boot": "0ad23526-0000-0000-0000-000000000000"})
    assert not certainly_dead({**record, "pidns": "pid:[1]"})
    # a process of another uid may only be hidden from us (/proc mounted hidepid)
    assert not certainly_dead({**record, "uid": int(record["uid"]) + 1})


def test_an_incomplete_or_garbled_record_is_not_judged() -> None:
    me = identity()
    for broken in ({}, {**me, "boot": ""}, {**me, "pid": "1"}, {**me, "pid": 0},
                   {**me, "start": 0}, {k: v for k, v in me.items() if k != "start"}):
        assert not certainly_dead(broken), broken
    assert not dead(None, me) and not dead(b"", me) and not dead(b"{not json", me)
    assert not dead(b"[1, 2]", me)


def test_start_time_survives_a_process_name_with_spaces_and_parentheses() -> None:
    code = ("import ctypes, time; ctypes.CDLL(None).prctl(15, b'w) 1 2 (x', 0, 0, 0); "
            "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while b") 1 2 (" not in Path(f"/proc/{proc.pid}/stat").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        record = identity(proc.pid)
        assert not certainly_dead(record)
        assert dead(orjson.dumps(record), identity()) is False
    finally:
        proc.kill()
        proc.wait()
    assert certainly_dead(record)
