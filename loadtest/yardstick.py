"""A machine yardstick: the CPU time of a fixed pure-Python workload.

This VM's speed moves by up to a factor of two over minutes (docs/benchmarks.md,
"The machine"), so a figure measured now and one measured an hour ago compare
only beside the yardstick taken with each. The workload is the interpreter's
everyday work — calls, dict and list operations, string formatting, integer
arithmetic — the same kind the gateway's per-request Python does, and it
allocates little so the garbage collector does not join in.

    python -m loadtest.yardstick        # prints the ms of one round (best of 5)
"""

from __future__ import annotations

import time

ROUNDS = 5


def _work() -> int:
    table: dict[str, int] = {}
    items: list[int] = []
    total = 0
    for i in range(60_000):
        key = f"k{i % 512}"
        table[key] = table.get(key, 0) + i
        items.append(i * 7 % 13)
        if len(items) > 64:
            total += sum(items)
            items.clear()
        total ^= _mix(i, total)
    return total + len(table)


def _mix(a: int, b: int) -> int:
    return (a * 31 + (b & 0xFFFF)) % 1_000_003


def yardstick_ms(rounds: int = ROUNDS) -> float:
    """CPU milliseconds of one round of the fixed workload, the best of `rounds`
    (the best, because anything else on the core can only make a round slower)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        _work()
        best = min(best, time.process_time() - t0)
    return round(best * 1000, 2)


if __name__ == "__main__":
    print(f"yardstick: {yardstick_ms()} ms CPU per round (best of {ROUNDS})")
