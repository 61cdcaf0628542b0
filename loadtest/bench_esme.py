"""Which outbound ESME: our SmppConnector, aiosmpplib's ESME or smpp34's Client?

One `smsgw smsc-sim` process on loopback (port picked at run time, receipts on
with a short delay) and, one after another in this process, each client in a
fresh event loop submitting the same messages as fast as its API allows:

- ``ours``: `gateway.connectors.smpp.SmppConnector` driven directly — one
  transceiver bind, `window` outstanding submit_sm, `send(message, part)` per
  part with a sliding set of at most `window` tasks; receipts through the
  `inbound` callback (counts, takes them all).
- ``aiosmpplib``: its `ESME` with its in-memory `SimpleBroker` and
  `SimpleCorrelator`. It has no window: one sender task dequeues the broker and
  writes each submit_sm without waiting for its response, and responses and
  receipts reach the application only through `AbstractHook.received`. Driven
  two ways: ``aiosmpplib-w`` keeps at most `window` submit_sm in flight (a
  semaphore taken before `broker.enqueue`, released by the hook on the
  submit_sm_resp), ``aiosmpplib-nowin`` enqueues everything at once (the
  broker's queue holds all messages, so only TCP flow control bounds it).
- ``smpp34``: its Rust/tokio `Client` (``window_size=window``,
  ``inbound_capacity=65536``), `Smsc.submit_sm` awaited per message by the same
  sliding set of tasks, receipts from `Smsc.next()`. ``smpp34-default`` (only
  when named in --clients) keeps the library's default inbound_capacity.
  Skipped, and said so, when ``import smpp34`` fails.

    python -m loadtest.bench_esme --messages 20000 --window 64

Per client: submits/s = messages / (first submit → last submit_sm_resp);
receipts/s = receipts / (first submit → last receipt); CPU = user+system
seconds of this process (all threads: smpp34's tokio runtime included) from
bind to unbind; sim CPU = the simulator's over the same span. Each client is
aborted after --max-seconds (120 s); its row then says ABORTED with what it
did until then. Figures and the conclusion: docs/delivery.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.connectors import Outcome
from gateway.connectors.smpp import SmppConnector
from gateway.core.config import ConnectorSettings
from gateway.core.events import Event, Receipt
from gateway.core.model import Message, new_id
from loadtest.harness import SimulatorProcess

HOST = "127.0.0.1"
CLIENTS = ("ours", "aiosmpplib-w", "aiosmpplib-nowin", "smpp34")
# smpp34 with its own default inbound_capacity: not run unless asked for
# (--clients ...,smpp34-default); see docs/delivery.md for what it does.
EXTRA_CLIENTS = ("smpp34-default",)
# smpp34's queue of inbound deliver_sm waiting for Smsc.next(); its default is
# small, and when it overflows under a window of receipts the session ends.
SMPP34_INBOUND_CAPACITY = 65536


@dataclass
class Progress:
    """What one client did; filled in as it goes so an aborted run still reports."""

    client: str
    expected: int
    submitted: int = 0  # submit_sm answered (any status)
    ok: int = 0  # ... with ESME_ROK
    errors: int = 0  # nack, transport error, non-zero status
    send_errors: int = 0  # aiosmpplib's hook.send_error (not a response)
    receipts: int = 0
    started: float = 0.0  # first submit
    acked: float = 0.0  # last submit_sm_resp
    last_receipt: float = 0.0
    note: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self.started = time.perf_counter()

    def answered(self, ok: bool) -> None:
        self.submitted += 1
        if ok:
            self.ok += 1
        else:
            self.errors += 1
        self.acked = time.perf_counter()

    def receipt(self) -> None:
        self.receipts += 1
        self.last_receipt = time.perf_counter()
        if self.receipts >= self.expected:
            self.done.set()

    async def wait_receipts(self, timeout: float) -> None:
        # Every accepted submit_sm asked for a receipt; errors never get one.
        self.expected = self.ok
        if self.receipts >= self.expected:
            return
        try:
            await asyncio.wait_for(self.done.wait(), timeout)
        except TimeoutError:
            self.note = f"receipts missing after {timeout:.0f} s"


def build_messages(count: int) -> list[Message]:
    now = time.time()
    return [
        Message(
            id=new_id(), account="bench", to=f"+86138{i:08d}", sender="BENCH",
            text=f"bench message {i}", msg_class="standard", encoding="gsm7", parts=1,
            created_at=now, expires_at=now + 3600, connectors=["bench"],
        )
        for i in range(count)
    ]


async def _bounded(window: int, items: list[Any], one: Callable[[Any], Coroutine[Any, Any, None]],
                   ) -> None:
    """At most `window` calls of `one` in flight; a new one starts as soon as one ends."""
    sem = asyncio.Semaphore(window)

    async def run(item: Any) -> None:
        try:
            await one(item)
        finally:
            sem.release()

    tasks = []
    for item in items:
        await sem.acquire()
        tasks.append(asyncio.create_task(run(item)))
    await asyncio.gather(*tasks)


# --- 1. ours ------------------------------------------------------------------

async def bench_ours(port: int, messages: list[Message], window: int, p: Progress,
                     receipt_wait: float) -> None:
    async def inbound(events: Sequence[Event]) -> list[bool]:
        for event in events:
            if isinstance(event, Receipt):
                p.receipt()
        return [True] * len(events)

    settings = ConnectorSettings(host=HOST, port=port, system_id="ours", password="bench",
                                 window=window, binds=1, bind_mode="trx")
    connector = SmppConnector("bench", settings, inbound)
    connector.start()
    try:
        if not await connector.wait_bound(10):
            raise RuntimeError("our connector did not bind in 10 s")

        async def one(message: Message) -> None:
            for part in connector.parts(message):
                result = await connector.send(message, part)
                p.answered(result.outcome is Outcome.OK)

        p.start()
        await _bounded(window, messages, one)
        await p.wait_receipts(receipt_wait)
    finally:
        await connector.stop()


# --- 2. aiosmpplib ------------------------------------------------------------

async def bench_aiosmpplib(port: int, messages: list[Message], window: int | None, p: Progress,
                           receipt_wait: float) -> None:
    from aiosmpplib import (
        ESME,
        TON,
        AbstractHook,
        DeliverSm,
        GenericNack,
        PhoneNumber,
        SmppCommandStatus,
        SmppMessage,
        SmppSessionState,
        SubmitSm,
        SubmitSmResp,
    )
    from aiosmpplib.broker import SimpleBroker

    sem = asyncio.Semaphore(window) if window else None

    class CountingHook(AbstractHook):
        """The only place aiosmpplib hands responses and receipts to the application."""

        async def sending(self, smpp_message: SmppMessage, pdu: bytes, client_id: str) -> None:
            pass

        async def received(self, smpp_message: SmppMessage | None, pdu: bytes,
                           client_id: str) -> None:
            if isinstance(smpp_message, SubmitSmResp | GenericNack):
                p.answered(smpp_message.command_status == SmppCommandStatus.ESME_ROK)
                if sem is not None:
                    sem.release()
            elif isinstance(smpp_message, DeliverSm) and smpp_message.is_receipt():
                p.receipt()

        async def send_error(self, smpp_message: SmppMessage, error: Exception,
                             client_id: str) -> None:
            # Also called when SimpleCorrelator gives up waiting (15 s): the
            # response may still come and is counted then.
            p.send_errors += 1
            if sem is not None:
                sem.release()

    broker = SimpleBroker(maxsize=window or len(messages))
    esme = ESME(smsc_host=HOST, smsc_port=port, system_id=p.client[:15], password="bench",
                hook=CountingHook(), broker=broker, log_level="WARNING",
                log_include_timestamp=False)
    runner = asyncio.create_task(esme.start())
    try:
        deadline = time.monotonic() + 10
        while esme.session_state != SmppSessionState.BOUND_TRX:
            if runner.done() or time.monotonic() > deadline:
                raise RuntimeError("aiosmpplib did not bind in 10 s")
            await asyncio.sleep(0.01)
        source = PhoneNumber("BENCH", TON.ALPHANUMERIC)
        p.start()
        for message in messages:
            if sem is not None:
                await sem.acquire()
            await broker.enqueue(SubmitSm(
                short_message=message.text, source=source,
                destination=PhoneNumber(message.to.lstrip("+"), TON.INTERNATIONAL),
                registered_delivery=1, log_id=message.id,
            ))
        while p.submitted < len(messages):
            if runner.done():
                raise RuntimeError(f"aiosmpplib ESME stopped: {runner.exception()!r}")
            await asyncio.sleep(0.005)
        await p.wait_receipts(receipt_wait)
    finally:
        await asyncio.wait_for(esme.stop(), 5)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


# --- 3. smpp34 ----------------------------------------------------------------

async def bench_smpp34(port: int, messages: list[Message], window: int, p: Progress,
                       receipt_wait: float, inbound_capacity: int | None) -> None:
    import smpp34

    extra = {} if inbound_capacity is None else {"inbound_capacity": inbound_capacity}
    client = smpp34.Client(HOST, port, p.client[:15], "bench", window_size=window, **extra)
    smsc = await client.connect()

    async def receive() -> None:
        while True:
            event = await smsc.next()
            if isinstance(event, smpp34.Disconnected):
                return
            if event.esm_class & 0x04:  # the core has already acknowledged it
                p.receipt()

    receiver = asyncio.create_task(receive())
    try:
        async def one(message: Message) -> None:
            try:
                resp = await smsc.submit_sm(
                    message.to.lstrip("+"), message.text.encode(), source_addr="BENCH",
                    source_addr_ton=5, source_addr_npi=0, dest_addr_ton=1, dest_addr_npi=1,
                    registered_delivery=1,
                )
            except Exception:
                p.answered(False)
            else:
                p.answered(resp.is_success)

        p.start()
        await _bounded(window, messages, one)
        await p.wait_receipts(receipt_wait)
    finally:
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
        try:
            await asyncio.wait_for(smsc.unbind(), 5)
        finally:
            await client.stop()


# --- running ------------------------------------------------------------------

def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _cpu_pid(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_client(name: str, sim: SimulatorProcess, messages: list[Message], window: int,
               max_seconds: float, loop_kind: str) -> dict[str, Any]:
    p = Progress(name, len(messages))
    row: dict[str, Any] = {"client": name}
    if name.startswith("smpp34"):
        try:
            import smpp34
        except ImportError as exc:
            row["skipped"] = f"smpp34 not importable ({exc}); `pip install smpp34` to include it"
            return row
        row["version"] = smpp34.__version__
    elif name.startswith("aiosmpplib"):
        from importlib.metadata import version

        row["version"] = version("aiosmpplib")
    receipt_wait = max(5.0, max_seconds / 4)
    benches: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
        "ours": lambda: bench_ours(sim.port, messages, window, p, receipt_wait),
        "aiosmpplib-w": lambda: bench_aiosmpplib(sim.port, messages, window, p, receipt_wait),
        "aiosmpplib-nowin": lambda: bench_aiosmpplib(sim.port, messages, None, p, receipt_wait),
        "smpp34": lambda: bench_smpp34(sim.port, messages, window, p, receipt_wait,
                                       SMPP34_INBOUND_CAPACITY),
        "smpp34-default": lambda: bench_smpp34(sim.port, messages, window, p, receipt_wait, None),
    }

    async def bounded() -> None:
        p.done = asyncio.Event()  # bound to this loop
        try:
            await asyncio.wait_for(benches[name](), max_seconds)
        except TimeoutError:
            p.note = f"ABORTED after {max_seconds:.0f} s"

    cpu0, sim0 = _cpu_self(), _cpu_pid(sim.pid)
    with asyncio.Runner(loop_factory=lambda: _new_loop(loop_kind)) as runner:
        try:
            runner.run(bounded())
        except Exception as exc:
            p.note = f"failed: {exc!r}"
    cpu, sim_cpu = _cpu_self() - cpu0, _cpu_pid(sim.pid) - sim0
    end = p.acked or time.perf_counter()
    seconds = end - p.started if p.started else 0.0
    receipt_span = (p.last_receipt - p.started) if p.last_receipt else 0.0
    row.update(
        messages=p.submitted, ok=p.ok, errors=p.errors + p.send_errors,
        seconds=round(seconds, 2),
        submits_per_s=round(p.submitted / seconds) if seconds else 0,
        receipts=p.receipts,
        receipts_per_s=round(p.receipts / receipt_span) if receipt_span else 0,
        cpu_s=round(cpu, 2), cpu_us_per_msg=round(cpu / p.submitted * 1e6) if p.submitted else 0,
        sim_cpu_s=round(sim_cpu, 2), note=p.note,
    )
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ("client", "messages", "errors", "seconds", "submits/s", "receipts", "receipts/s",
            "CPU s", "CPU µs/msg", "sim CPU s", "note")
    keys = ("client", "messages", "errors", "seconds", "submits_per_s", "receipts",
            "receipts_per_s", "cpu_s", "cpu_us_per_msg", "sim_cpu_s", "note")
    lines = [head]
    for row in rows:
        if "skipped" in row:
            lines.append((row["client"], *("-" * (len(head) - 2)), row["skipped"]))
        else:
            lines.append(tuple(str(row.get(k, "")) for k in keys))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    for n, line in enumerate(lines):
        print("  ".join(str(c).ljust(w) if i in (0, len(head) - 1) else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(line, widths, strict=True))).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.bench_esme", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--receipt-delay", type=float, default=0.02,
                    help="the simulator's seconds from submit to receipt")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="abort a client after this")
    ap.add_argument("--clients", default=",".join(CLIENTS),
                    help=f"any of {','.join(CLIENTS + EXTRA_CLIENTS)}")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                    help="event loop of the benchmark process (the gateway runs uvloop)")
    a = ap.parse_args(argv)
    clients = [c.strip() for c in a.clients.split(",") if c.strip()]
    unknown = set(clients) - set(CLIENTS) - set(EXTRA_CLIENTS)
    if unknown:
        ap.error(f"unknown client(s): {', '.join(sorted(unknown))}")
    if a.messages < 1 or a.window < 1:
        ap.error("--messages and --window must be positive")

    from gateway.core import logs

    logs.configure("warning", stream=sys.stderr)
    messages = build_messages(a.messages)
    load = os.getloadavg()
    print(f"bench_esme: {a.messages} messages, window {a.window}, receipts after "
          f"{a.receipt_delay} s, {a.loop}, {os.cpu_count()} cores, "
          f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-esme-") as tmp:
        sim = SimulatorProcess(Path(tmp), args=["--receipt-delay", str(a.receipt_delay)])
        sim.start()
        try:
            print(f"smsc-sim pid {sim.pid} on {HOST}:{sim.port}")
            for name in clients:
                rows.append(run_client(name, sim, messages, a.window, a.max_seconds, a.loop))
                print(f"  {name}: done", flush=True)
        finally:
            stats = sim.stop()  # its final stats file is written on exit
    print()
    print_table(rows)
    versions = {r["client"]: r["version"] for r in rows if "version" in r}
    if versions:
        print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"simulator: submit_sm {stats.get('submit_sm')}, receipts sent "
          f"{stats.get('receipts_sent')}, acked {stats.get('receipts_acked')}, retried "
          f"{stats.get('receipts_retried')} (deliver_sm_resp late, not OK or lost), failed "
          f"{stats.get('receipts_failed')}")
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
