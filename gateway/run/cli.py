"""The `smsgw` command line."""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

from gateway.core.config import ConfigError, Settings, load_settings

# Each entry point of this group names a function that takes argparse's
# subparsers action and adds its commands, each with `func` set (pyproject.toml).
COMMANDS_GROUP = "smsgw.commands"


def _load(path: str | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"config error: {line}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.core import logs
    from gateway.run import supervisor

    settings = _load(args.config)
    logs.configure(settings.log.level)
    return supervisor.run(settings, Path(args.config) if args.config else None, args.workers)


def cmd_worker(args: argparse.Namespace) -> int:
    from gateway.core import logs
    from gateway.run import supervisor

    settings = _load(args.config)
    logs.configure(settings.log.level)
    supervisor.run_worker(settings, args.redis_url, args.index, args.claim_from)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    print(
        f"config ok: {len(settings.accounts)} accounts, {len(settings.connectors)} connectors, "
        f"{len(settings.routes)} routes"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from gateway.run import operations

    return operations.status(_load(args.config))


def cmd_dlq(args: argparse.Namespace) -> int:
    from gateway.run import operations

    settings = _load(args.config)
    if args.dlq_command == "list":
        return operations.dlq_list(settings, args.count)
    return operations.dlq_replay(settings, args.ids, args.all)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsgw", description="High-throughput SMS gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway (HTTP API, dispatchers, connectors)")
    run.add_argument(
        "-c", "--config", default=None, help="TOML file (default: config/gateway.toml)"
    )
    run.add_argument("--workers", type=int, default=1, help="gateway processes on this host")
    run.set_defaults(func=cmd_run)

    worker = sub.add_parser("worker", help=argparse.SUPPRESS)
    worker.add_argument("-c", "--config", default=None)
    worker.add_argument("--redis-url", required=True)
    worker.add_argument("--index", type=int, default=0)
    # The consumer name of a dead worker this one replaces: it takes that one's
    # lane entries over at once (gateway/dispatch/takeover.py).
    worker.add_argument("--claim-from", action="append", default=[], metavar="CONSUMER")
    worker.set_defaults(func=cmd_worker)

    check = sub.add_parser("check-config", help="validate a config file; exit 1 on error")
    check.add_argument("-c", "--config", required=True)
    check.set_defaults(func=cmd_check_config)

    status = sub.add_parser("status", help="connectors, queue depths, deferred, dead letters")
    status.add_argument("-c", "--config", default=None)
    status.set_defaults(func=cmd_status)

    dlq = sub.add_parser("dlq", help="inspect and re-queue dead-lettered messages")
    dlq.add_argument("-c", "--config", default=None)
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_sub.add_parser("list", help="one JSON line per dead letter")
    dlq_list.add_argument("--count", type=int, default=100)
    dlq_replay = dlq_sub.add_parser("replay", help="queue a fresh copy of each named message")
    dlq_replay.add_argument("ids", nargs="*")
    dlq_replay.add_argument("--all", action="store_true")
    dlq.set_defaults(func=cmd_dlq)

    # Commands other packages provide (loadtest/: smsc-sim, demo, loadtest),
    # found by entry point so that nothing here imports them.
    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        entry.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
    except BrokenPipeError:
        # Whoever read our output stopped early (`smsgw dlq list | head`): not a
        # failure worth a traceback. Point stdout at /dev/null so the flush at
        # exit does not raise again; 141 is what a shell reports for SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return code


if __name__ == "__main__":
    raise SystemExit(main())
