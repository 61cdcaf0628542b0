"""The machine's speed now, as one number to print beside a benchmark's figures.

This VM's speed moves by up to 2× from one hour to the next, so a figure alone
cannot say whether code got faster. `yardstick_ms` times a fixed pure-Python
workload (integer arithmetic, dict stores, string formatting: the interpreter
work a gateway does) and returns the best of a few runs in milliseconds —
lower is a faster machine. Two runs compare when their figures are scaled by
their yardsticks. About 0.2 s per run on this machine in a fast phase.

``python -m loadtest.yardstick`` prints it.
"""

from __future__ import annotations

import sys
import time

ROUNDS = 1_000_000  # fixed: changing it makes old yardsticks incomparable


def _workload(rounds: int = ROUNDS) -> int:
    total = 0
    table: dict[int, str] = {}
    for i in range(rounds):
        total += (i * i) % 7
        table[i & 1023] = f"{i:x}"
    return total + len(table)


def yardstick_ms(repeat: int = 3) -> float:
    """Best of `repeat` wall-clock runs of the fixed workload, in ms. The best, not
    the mean: another process taking the core only ever makes a run slower."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        _workload()
        best = min(best, time.perf_counter() - t0)
    return round(best * 1000, 1)


if __name__ == "__main__":
    sys.stdout.write(f"yardstick {yardstick_ms()} ms\n")
