"""Recipient number lookups on one core: phonenumbers' full path beside the fast path.

    python -m loadtest.bench_numbers [--count 200000] [--runs 3]

Every number is seen once per run, as in a marketing blast to a new list (the
whole-number cache of gateway.core.numbers cannot help it). Two lists of `--count`
distinct numbers written "+<digits>":

- *+86 mobiles*, built as loadtest/bench_batch.py builds its recipients;
- *mixed countries*: mobile and fixed-line numbers of 40 countries (each
  region's example number with its last 4 digits drawn at random, seeded; one
  in 20 a digit short), so shared codes (+1, +7, +44), Italy's leading zero
  and invalid numbers are in it.

For each list: (a) the full path, `phonenumbers.parse` + type + carrier + time
zone (gateway.core.numbers._lookup_full); (b) the path gateway.core.numbers takes now
without its whole-number cache (`_lookup.__wrapped__`), with its per-country
tables and prefix memos cleared before each run so their warm-up is counted;
(c) `numbers.normalize` with a cold whole-number cache, and (d) the same list
again, cache warm. The answers of (a) and (b) are compared number by number.
CPU time of this process is shown beside wall time: the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable, Sequence

import phonenumbers

from gateway.core import numbers
from loadtest.bench_batch import recipients

E164 = phonenumbers.PhoneNumberFormat.E164

MIXED_REGIONS = ("CN", "IN", "US", "ID", "BR", "RU", "MX", "JP", "PH", "VN", "DE", "TR", "GB",
                 "FR", "IT", "ES", "KR", "AR", "CO", "PL", "CA", "KZ", "NG", "EG", "SA", "TH",
                 "ZA", "PK", "BD", "MY", "AU", "NL", "UA", "CL", "PE", "AE", "JM", "JE", "IM",
                 "SG")


def mixed(count: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    types = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    bases = []
    for region in MIXED_REGIONS:
        for ntype in types:
            example = phonenumbers.example_number_for_type(region, ntype)
            if example is not None:
                bases.append(phonenumbers.format_number(example, E164))
    out: set[str] = set()
    while len(out) < count:
        base = rng.choice(bases)
        number = base[:-4] + f"{rng.randrange(10_000):04d}"
        # One in 20 a digit short: mostly invalid, as lists have some.
        out.add(number[:-1] if rng.randrange(20) == 0 else number)
    result = sorted(out)
    rng.shuffle(result)
    return result


def reset_fast_path() -> None:
    numbers._countries.clear()
    numbers._carrier_by_prefix.clear()
    numbers._zone_by_prefix.clear()


def timed(fn: Callable[[str], object], items: Sequence[str], runs: int,
          before: Callable[[], None] | None = None) -> tuple[float, float, list[object]]:
    """Best (wall µs, CPU µs) per item over `runs` runs, and the last run's answers."""
    best_wall = best_cpu = float("inf")
    out: list[object] = []
    for _ in range(runs):
        if before is not None:
            before()
        wall, cpu = time.perf_counter(), time.process_time()
        out = [fn(n) for n in items]
        best_wall = min(best_wall, (time.perf_counter() - wall) / len(items) * 1e6)
        best_cpu = min(best_cpu, (time.process_time() - cpu) / len(items) * 1e6)
    return best_wall, best_cpu, out


def line(label: str, wall_us: float, cpu_us: float) -> None:
    print(f"  {label:<44} {1e6 / wall_us:>10,.0f}/s  {wall_us:6.2f} µs wall  {cpu_us:6.2f} µs CPU")


def bench(title: str, items: list[str], region: str, runs: int) -> None:
    print(f"{title}: {len(items):,} distinct numbers, default region {region}")
    full = numbers._lookup_full
    fast = numbers._lookup.__wrapped__
    # Metadata modules load on first use: not what a long-running worker pays.
    full(items[0], region)
    w, c, full_answers = timed(lambda n: full(n, region), items, 1)
    line("(a) full path, phonenumbers.parse ...", w, c)
    w, c, fast_answers = timed(lambda n: fast(n, region), items, runs, reset_fast_path)
    line("(b) fast path, first-seen numbers", w, c)
    numbers.configure(len(items) + 1)

    def cold() -> None:
        reset_fast_path()
        numbers._lookup.cache_clear()

    def normalize(n: str) -> object:
        try:
            return numbers.normalize(n, region)
        except numbers.InvalidNumber:
            return None

    w, c, _ = timed(normalize, items, runs, cold)
    line("(c) normalize(), whole-number cache cold", w, c)
    w, c, _ = timed(normalize, items, runs)
    line("(d) normalize(), same list again (cache warm)", w, c)
    valid = sum(a is not None for a in full_answers)
    same = full_answers == fast_answers
    print(f"  answers of (a) and (b) identical: {'yes' if same else 'NO'} ({valid:,} valid)")
    if not same:
        raise SystemExit("the fast path disagrees with phonenumbers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3, help="best of N for (b)-(d)")
    args = parser.parse_args()
    print(f"phonenumbers {phonenumbers.__version__}, load average {os.getloadavg()[0]:.2f}"
          f" on {os.cpu_count()} cores")
    cn = recipients(args.count, args.count)
    bench("+86 mobiles", cn, "CN", args.runs)
    bench("mixed countries", mixed(args.count), "US", args.runs)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
