"""The `smsgw` subcommands that live in loadtest/: `smsc-sim`, `demo`, `loadtest`.

pyproject.toml names `add_commands` in the `smsgw.commands` entry-point group;
gateway/run/cli.py finds it there, so the dependency points one way: loadtest/
uses the gateway, the gateway never imports loadtest/.
"""

from __future__ import annotations

import argparse
from typing import Any

from loadtest import demo, loadgen, smsc_sim


def add_commands(sub: Any) -> None:
    """Add this package's subparsers to `sub` (argparse's subparsers action);
    each sets `func`, which the CLI calls with the parsed arguments."""
    sim: argparse.ArgumentParser = sub.add_parser(
        "smsc-sim", help="SMPP SMSC simulator for tests, demos and load")
    smsc_sim.add_arguments(sim)
    sim.set_defaults(func=smsc_sim.main)

    dem: argparse.ArgumentParser = sub.add_parser(
        "demo", help="gateway + simulator + a burst of messages, then a report")
    demo.add_arguments(dem)
    dem.set_defaults(func=demo.main)

    load: argparse.ArgumentParser = sub.add_parser(
        "loadtest", help="load generator and end-to-end audit report")
    loadgen.add_arguments(load)
    load.set_defaults(func=loadgen.main)
