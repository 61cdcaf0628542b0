"""`smsgw demo`: gateway + embedded Redis + simulator, a burst over HTTP, the report.

The load test at demo size: `smsgw loadtest -n 1000 --mix marketing:0.99,otp:0.01`
with receipts on, every message audited.
"""

from __future__ import annotations

import argparse

from loadtest.loadgen import Options, execute, format_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--messages", type=int, default=1000)
    parser.add_argument("--mix", default="marketing:0.99,otp:0.01")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--sim", default="--receipt-delay 0.05",
                        help="simulator options, e.g. '--stat-mix DELIVRD:0.97,UNDELIV:0.03'")


def main(args: argparse.Namespace) -> int:
    report = execute(Options(messages=args.messages, mix=args.mix,
                             concurrency=args.concurrency, timeout=args.timeout,
                             sim=args.sim, settle=2.0, final_wait=10.0))
    print(format_report(report))
    a = report["audit"]
    ok = a["lost"] == 0 and not a.get("duplicated") and a["accepted"] == args.messages
    return 0 if ok else 1
