"""Summarise a `py-spy record -f raw` file (folded stacks): the functions with the
largest share of samples, by self time (the leaf frame) and inclusive time.

    python -m loadtest.profile_summary gateway.raw [--top 25] [--idle]
        [--group NAME=REGEX ...]

Idle samples (the event loop waiting in epoll/select) are left out unless
--idle, so shares are of the time the process was busy. With --group, each
sample also counts for the first group (in the order given) that has a frame
matching its regex, or "other": a breakdown by stage, such as HTTP server,
framework, admission and Redis client.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

IDLE = re.compile(r"\b(select|poll|epoll_wait|_run_once) \(")
_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^():]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "/work/wt-load/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m['fn']} ({path})"


def summarise(path: str, top: int = 25, idle: bool = False,
              groups: list[tuple[str, str]] | None = None) -> str:
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    by_group: Counter[str] = Counter()
    compiled = [(name, re.compile(rx)) for name, rx in groups or ()]
    total = 0
    idle_n = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = stack.split(";")
            if not idle and frames and IDLE.search(frames[-1]):
                idle_n += n
                continue
            total += n
            self_c[_short(frames[-1])] += n
            for fr in {_short(fr) for fr in frames}:
                incl[fr] += n
            if compiled:
                by_group[next((name for name, rx in compiled
                               if any(rx.search(fr) for fr in frames)), "other")] += n
    out = [f"{total} busy samples ({idle_n} idle samples left out)", "", "self time:"]
    out += [f"  {c / total:6.1%}  {fn}" for fn, c in self_c.most_common(top)]
    out += ["", "inclusive time:"]
    out += [f"  {c / total:6.1%}  {fn}" for fn, c in incl.most_common(top)]
    if compiled:
        out += ["", "by group (first match):"]
        out += [f"  {by_group[name] / total:6.1%}  {name}"
                for name in [*(name for name, _ in compiled), "other"]]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("raw")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--idle", action="store_true")
    p.add_argument("--group", action="append", default=[], metavar="NAME=REGEX",
                   help="count samples with a frame matching REGEX under NAME (repeatable)")
    a = p.parse_args()
    groups = [tuple(g.split("=", 1)) for g in a.group]
    print(summarise(a.raw, a.top, a.idle, groups))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
