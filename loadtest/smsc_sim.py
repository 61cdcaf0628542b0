"""`smsgw smsc-sim`: an SMPP 3.4 SMSC simulator for tests, demos and load.

It accepts binds, acknowledges every submit_sm with a unique message id, and
sends a delivery receipt (deliver_sm, esm_class 0x04, Appendix B text plus
receipted_message_id and message_state TLVs) after `receipt_delay` seconds.
It counts what it saw — submits, unique and duplicate messages by
(destination, short_message) — and writes a JSON summary to `--stats-file`
(every second and on exit) and to stdout on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway.smpp_io import SmppProtocol
from protocols.receipt import Receipt, format_receipt, message_state_for
from protocols.smpp import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    CommandStatus,
    DeliverSm,
    Role,
    SubmitSm,
    Tag,
)

RECEIPT_ATTEMPTS = 5


@dataclass
class SimStats:
    binds: int = 0
    submit_sm: int = 0
    unique: int = 0
    duplicates: int = 0
    receipts_sent: int = 0
    receipts_acked: int = 0


@dataclass(frozen=True)
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 2776
    system_id: str = ""  # empty: accept any credentials
    password: str = ""
    receipt_delay: float = 0.05
    stats_file: str | None = None


class SmscSimulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = SimStats()
        self.seen: set[tuple[str, bytes]] = set()
        self.receivers: list[_SmscConnection] = []
        self._counter = 0
        self._prefix = int.from_bytes(os.urandom(2), "big") << 32
        self.server: asyncio.Server | None = None

    def next_id(self) -> str:
        self._counter += 1
        return f"{self._prefix | self._counter:x}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _SmscConnection(self), self.config.host, self.config.port, backlog=1024
        )

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for conn in list(self.receivers):
                conn.close()
            await self.server.wait_closed()

    def record_submit(self, pdu: SubmitSm) -> None:
        self.stats.submit_sm += 1
        key = (pdu.destination_addr, pdu.short_message)
        if key in self.seen:
            self.stats.duplicates += 1
        else:
            self.seen.add(key)
            self.stats.unique += 1

    def write_stats(self) -> None:
        if self.config.stats_file:
            tmp = Path(self.config.stats_file + ".tmp")
            tmp.write_text(json.dumps(asdict(self.stats)))
            tmp.replace(self.config.stats_file)

    async def send_receipt(
        self, origin: _SmscConnection, pdu: SubmitSm, message_id: str, submitted: float
    ) -> None:
        await asyncio.sleep(self.config.receipt_delay)
        target = origin if origin.can_receive else next(
            (c for c in self.receivers if c.system_id == origin.system_id and c.can_receive), None
        )
        if target is None or target.transport is None:
            return
        now = dt.datetime.now()
        text = format_receipt(
            Receipt(
                id=message_id, sub=1, dlvrd=1,
                submit_date=dt.datetime.fromtimestamp(submitted), done_date=now,
                stat="DELIVRD", err="000", text="",
            )
        )
        receipt = DeliverSm(
            source_addr_ton=pdu.dest_addr_ton, source_addr_npi=pdu.dest_addr_npi,
            source_addr=pdu.destination_addr, dest_addr_ton=pdu.source_addr_ton,
            dest_addr_npi=pdu.source_addr_npi, destination_addr=pdu.source_addr,
            esm_class=0x04, short_message=text.encode(),
        )
        receipt.set(Tag.RECEIPTED_MESSAGE_ID, message_id)
        receipt.set(Tag.MESSAGE_STATE, message_state_for("DELIVRD"))
        self.stats.receipts_sent += 1
        # Like a real SMSC, retry a receipt the ESME did not acknowledge.
        for attempt in range(RECEIPT_ATTEMPTS):
            try:
                resp = await target.request(receipt, 30.0)
            except (ConnectionError, TimeoutError):
                return
            if resp.command_status == CommandStatus.ESME_ROK:
                self.stats.receipts_acked += 1
                return
            receipt.sequence_number = 0
            await asyncio.sleep(0.5 * (attempt + 1))


class _SmscConnection(SmppProtocol):
    role = Role.SMSC

    def __init__(self, sim: SmscSimulator) -> None:
        super().__init__()
        self.sim = sim
        self.system_id = ""
        self.can_receive = False

    def on_request(self, pdu: Any) -> None:
        sim = self.sim
        if isinstance(pdu, SubmitSm):
            message_id = sim.next_id()
            sim.record_submit(pdu)
            self.send(pdu.make_resp(message_id=message_id))
            if pdu.registered_delivery & 0x03:
                asyncio.get_running_loop().create_task(
                    sim.send_receipt(self, pdu, message_id, time.time())
                )
        elif isinstance(pdu, BindTransmitter | BindReceiver | BindTransceiver):
            cfg = sim.config
            if cfg.system_id and (pdu.system_id != cfg.system_id or pdu.password != cfg.password):
                self.send(pdu.make_resp(command_status=CommandStatus.ESME_RINVPASWD))
                return
            self.system_id = pdu.system_id
            self.can_receive = not isinstance(pdu, BindTransmitter)
            sim.stats.binds += 1
            sim.receivers.append(self)
            self.send(pdu.make_resp(system_id="smsgw-sim"))
        else:
            super().on_request(pdu)

    def on_closed(self) -> None:
        if self in self.sim.receivers:
            self.sim.receivers.remove(self)


async def run_simulator(config: SimConfig) -> SimStats:
    sim = SmscSimulator(config)
    await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"event": "smsc_sim_listening", "host": config.host, "port": config.port}),
          flush=True)
    while not stop.is_set():
        sim.write_stats()
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
    sim.write_stats()
    await sim.close()
    return sim.stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2776)
    parser.add_argument("--system-id", default="", help="required system_id (default: any)")
    parser.add_argument("--password", default="")
    parser.add_argument("--receipt-delay", type=float, default=0.05)
    parser.add_argument("--stats-file", default=None)


def main(args: argparse.Namespace) -> int:
    config = SimConfig(
        host=args.host, port=args.port, system_id=args.system_id, password=args.password,
        receipt_delay=args.receipt_delay, stats_file=args.stats_file,
    )
    try:
        import uvloop

        stats = uvloop.run(run_simulator(config))
    except ImportError:
        stats = asyncio.run(run_simulator(config))
    json.dump({"event": "smsc_sim_summary", **asdict(stats)}, sys.stdout)
    print()
    return 0
