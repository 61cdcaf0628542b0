"""`smsgw smsc-sim`: an SMPP 3.4 SMSC simulator for tests, demos and load.

It accepts binds (any number, transmitter/receiver/transceiver), acknowledges
submit_sm with a unique message id and sends a delivery receipt (deliver_sm,
esm_class 0x04, Appendix B text plus receipted_message_id and message_state
TLVs), retrying receipts the ESME does not acknowledge.

Failure injection, all off by default (see docs/simulator.md):
- ``--ack-latency`` delays every submit_sm_resp;
- ``--tps`` caps accepted submit_sm per second across all binds, the excess is
  answered ``ESME_RTHROTTLED``;
- ``--error-rate 0x58:0.01`` answers that share of submit_sm with that status;
- ``--receipt-delay``/``--receipt-dist`` (fixed, uniform, exponential) and
  ``--stat-mix DELIVRD:0.97,UNDELIV:0.02,EXPIRED:0.01`` with ``--stat-err
  UNDELIV:011``; ``--drop-receipts N`` never sends the first N receipts;
- ``--receipt-before-resp P`` sends that share of receipts before the
  submit_sm_resp (the response waits for the receipt's deliver_sm_resp);
- ``--drop-after N`` closes a connection (no unbind) on its Nth submit_sm,
  leaving the last ``--drop-unanswered K`` unanswered; ``--drop-count`` bounds
  how many connections are dropped;
- ``--refuse-binds`` answers binds ``ESME_RBINDFAIL``; SIGUSR1 takes the SMSC
  down (drops every connection, refuses binds), SIGUSR2 brings it back;
- ``--mo-rate`` generates mobile-originated deliver_sm.

Message ids are a random 16-bit prefix and a counter, in lower-case hex;
``--first-id 0c2800000001`` makes them count up from that id instead, keeping
its width (leading zeros) and case, for tests of ids that normalisation would
change.

It counts what it saw — submits, unique and duplicate messages by
(destination_addr, short_message), acks per command_status, receipts per stat —
and writes a JSON summary to ``--stats-file`` (every second and on exit) and to
stdout on exit. ``--record FILE`` appends one JSON line per acknowledged
submit_sm (SMSC id, destination, content hash, time, receipt stat) for audits.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import heapq
import json
import os
import random
import signal
import ssl
import string
import struct
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from gateway.core.smpp_transport import SmppProtocol
from protocols.receipt import message_state_for
from protocols.smpp import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    CommandStatus,
    ConnectionFatal,
    DeliverSm,
    PduError,
    Role,
    SubmitSm,
    Tag,
)

RECEIPT_ATTEMPTS = 10
RECEIPT_RESP_TIMEOUT = 30.0
# A submit_sm_resp held for a receipt-before-response is sent anyway after this.
HELD_RESP_TIMEOUT = 5.0
STATS_SERIES_MAX = 3600
DEFAULT_ERR = {"DELIVRD": "000", "EXPIRED": "001", "UNDELIV": "001", "REJECTD": "001",
               "DELETED": "001", "UNKNOWN": "001"}


def _parse_ratio_list(text: str, *, key_int: bool = False) -> list[tuple[Any, float]]:
    out: list[tuple[Any, float]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.rpartition(":")
        if not sep or not key:
            raise ValueError(f"expected KEY:RATIO, got {item!r}")
        ratio = float(value)
        if not 0 <= ratio <= 1:
            raise ValueError(f"ratio {ratio} outside 0..1 in {item!r}")
        out.append((int(key, 0) if key_int else key.strip().upper(), ratio))
    return out


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 2776
    system_id: str = ""  # empty: accept any credentials
    password: str = ""
    ack_latency: float = 0.0
    tps: int = 0  # 0: no cap
    error_rates: list[tuple[int, float]] = field(default_factory=list)
    receipt_delay: float = 0.05
    receipt_dist: str = "fixed"  # fixed | uniform (0..2*delay) | exponential (mean delay)
    stat_mix: list[tuple[str, float]] = field(default_factory=lambda: [("DELIVRD", 1.0)])
    stat_err: dict[str, str] = field(default_factory=dict)
    receipt_before_resp: float = 0.0
    drop_receipts: int = 0
    drop_after: int = 0
    drop_unanswered: int = 0
    drop_count: int = 0  # 0: every connection drops after drop_after submits
    drop_taken: bool = False  # unanswered submits were taken (counted, receipted) or lost
    receipt_ids: str = "hex"  # "dec": receipts carry the id in decimal
    # The first message id handed out, hex; the next ones count up from it with
    # its width and case. Empty: a random 16-bit prefix and a counter.
    first_id: str = ""
    refuse_binds: bool = False
    start_down: bool = False
    mo_rate: float = 0.0
    mo_text: str = "TD"
    mo_from: list[str] = field(default_factory=lambda: ["8613800000000"])
    mo_to: str = "10690000"
    mo_count: int = 0  # 0: unlimited
    stats_file: str | None = None
    record: str | None = None
    seed: int | None = None
    # SMPP over TLS: PEM certificate chain and key; both set = TLS only.
    tls_cert: str | None = None
    tls_key: str | None = None

    def __post_init__(self) -> None:
        total = sum(r for _, r in self.error_rates)
        if total > 1:
            raise ValueError("error rates add up to more than 1")
        if self.receipt_dist not in ("fixed", "uniform", "exponential"):
            raise ValueError("receipt_dist is one of fixed, uniform, exponential")
        if not self.stat_mix or abs(sum(r for _, r in self.stat_mix) - 1) > 1e-6:
            raise ValueError("stat mix ratios must add up to 1")
        # SMPP 3.4 §5.2.23: message_id is a C-Octet String of up to 65 octets.
        if self.first_id and (len(self.first_id) > 64
                              or any(c not in string.hexdigits for c in self.first_id)):
            raise ValueError("first id is up to 64 hex digits, e.g. 0c2800000001")


@dataclass
class SimStats:
    binds: int = 0
    binds_refused: int = 0
    bound_now: int = 0
    submit_sm: int = 0  # every submit_sm received while bound
    accepted: int = 0  # answered ESME_ROK (plus taken-but-unanswered, see drop_taken)
    unique: int = 0
    duplicates: int = 0
    acks: dict[str, int] = field(default_factory=dict)  # command_status (hex) → count
    receipts: dict[str, int] = field(default_factory=dict)  # stat → receipts acknowledged
    receipts_sent: int = 0  # deliver_sm receipts written, retries included
    receipts_acked: int = 0
    receipts_retried: int = 0
    receipts_failed: int = 0  # gave up after RECEIPT_ATTEMPTS
    receipts_dropped: int = 0  # by --drop-receipts
    receipts_before_resp: int = 0
    drops: int = 0  # connections closed by --drop-after
    unanswered: int = 0  # submit_sm left without a response by a drop
    mo_sent: int = 0
    mo_acked: int = 0
    down: bool = False
    started_at: float = 0.0
    first_submit_at: float = 0.0
    last_submit_at: float = 0.0
    first_receipt_acked_at: float = 0.0
    last_receipt_acked_at: float = 0.0
    series: list[tuple[float, int, int]] = field(default_factory=list)  # (t, accepted, receipts)


class _Pending:
    """A receipt waiting for its time, its receiver bind or its deliver_sm_resp."""

    __slots__ = ("attempts", "dest", "dest_npi", "dest_ton", "held", "message_id", "source",
                 "source_npi", "source_ton", "stat", "submitted", "system_id")

    def __init__(self, system_id: str, pdu: SubmitSm, message_id: str, stat: str,
                 submitted: float) -> None:
        self.system_id = system_id
        self.message_id = message_id
        self.stat = stat
        self.submitted = submitted
        # The receipt goes from the handset back to the sender.
        self.source, self.source_ton, self.source_npi = (
            pdu.destination_addr, pdu.dest_addr_ton, pdu.dest_addr_npi)
        self.dest, self.dest_ton, self.dest_npi = (
            pdu.source_addr, pdu.source_addr_ton, pdu.source_addr_npi)
        self.attempts = 0
        # (connection, submit_sm_resp) to send once this receipt is acknowledged
        self.held: tuple[_SmscConnection, Any] | None = None


_date_cache: dict[int, str] = {}
_STATE: dict[str, int] = {}  # stat → message_state TLV value


def _receipt_date(ts: float) -> str:
    minute = int(ts // 60)
    text = _date_cache.get(minute)
    if text is None:
        if len(_date_cache) > 1024:
            _date_cache.clear()
        text = dt.datetime.fromtimestamp(minute * 60).strftime("%y%m%d%H%M")
        _date_cache[minute] = text
    return text


_HEADER = struct.Struct(">IIII")
_DELIVER_SM = 0x00000005
_SUBMIT_SM_RESP = 0x80000004
_TLV_RECEIPTED_ID = struct.pack(">H", Tag.RECEIPTED_MESSAGE_ID)
_CONTENT_TLVS = (Tag.MESSAGE_PAYLOAD, Tag.SAR_MSG_REF_NUM, Tag.SAR_TOTAL_SEGMENTS,
                 Tag.SAR_SEGMENT_SEQNUM)
_TLV_MESSAGE_STATE = struct.pack(">HH", Tag.MESSAGE_STATE, 1)


def encode_submit_sm_resp_ok(sequence: int, message_id: bytes) -> bytes:
    """submit_sm_resp, ESME_ROK: the hot path, by hand (a test checks it against the codec)."""
    return _HEADER.pack(17 + len(message_id), _SUBMIT_SM_RESP, 0, sequence) + message_id + b"\0"


def encode_receipt(sequence: int, p: _Pending, text: bytes, state: int,
                   receipt_id: str | None = None) -> bytes:
    """deliver_sm receipt (esm_class 0x04) with receipted_message_id and message_state
    TLVs, by hand (a test checks it against the codec's DeliverSm)."""
    mid = (receipt_id or p.message_id).encode()
    body = b"".join((
        b"\0", bytes((p.source_ton, p.source_npi)), p.source.encode(), b"\0",
        bytes((p.dest_ton, p.dest_npi)), p.dest.encode(), b"\0",
        b"\x04\0\0\0\0\0\0\0\0", bytes((len(text),)), text,
        _TLV_RECEIPTED_ID, struct.pack(">H", len(mid) + 1), mid, b"\0",
        _TLV_MESSAGE_STATE, bytes((state,)),
    ))
    return _HEADER.pack(16 + len(body), _DELIVER_SM, 0, sequence) + body


class SmscSimulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = SimStats(started_at=time.time(), down=config.start_down)
        self.rng = random.Random(config.seed)
        self.seen: set[bytes] = set()
        self.connections: list[_SmscConnection] = []
        self._counter = 0
        first = config.first_id
        if first:
            self._prefix = int(first, 16) - 1
            self._id_format = f"0{len(first)}{'X' if first != first.lower() else 'x'}"
        else:
            self._prefix = int.from_bytes(os.urandom(2), "big") << 32
            self._id_format = "x"
        self.server: asyncio.Server | None = None
        self._acks: Counter[int] = Counter()
        self._receipt_stats: Counter[str] = Counter()
        for stat, _ in config.stat_mix:
            _STATE.setdefault(stat, message_state_for(stat))
        # throttle: submits accepted in the current wall-clock second
        self._tps_second = 0
        self._tps_used = 0
        self._receipts_to_drop = config.drop_receipts
        self._drops_left = config.drop_count
        self._timers: list[tuple[float, int, _Pending]] = []  # heap of receipts due
        self._fifo: deque[tuple[float, _Pending]] = deque()  # first attempts, fixed delay
        self._receivers: dict[str, list[_SmscConnection]] = {}
        self._tick = 0
        self._rr = 0
        self._record: TextIO | None = None
        self._record_buf: list[str] = []
        self._pump_task: asyncio.Task[None] | None = None
        self._mo_task: asyncio.Task[None] | None = None
        err_cum: list[tuple[float, int]] = []
        acc = 0.0
        for status, ratio in config.error_rates:
            acc += ratio
            err_cum.append((acc, status))
        self._err_cum = err_cum
        stat_cum: list[tuple[float, str]] = []
        acc = 0.0
        for stat, ratio in config.stat_mix:
            acc += ratio
            stat_cum.append((acc, stat))
        self._stat_cum = stat_cum
        self._stat_single = config.stat_mix[0][0] if len(config.stat_mix) == 1 else None
        self._err_codes = {**DEFAULT_ERR, **config.stat_err}

    # --- lifecycle ---------------------------------------------------------

    def next_id(self) -> str:
        self._counter += 1
        return format(self._prefix + self._counter, self._id_format)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.config.record:
            self._record = open(self.config.record, "a", encoding="utf-8")  # noqa: SIM115
        tls = None
        if self.config.tls_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        self.server = await loop.create_server(
            lambda: _SmscConnection(self), self.config.host, self.config.port, backlog=1024,
            ssl=tls,
        )
        self._pump_task = loop.create_task(self._pump())
        if self.config.mo_rate > 0:
            self._mo_task = loop.create_task(self._generate_mo())

    async def close(self) -> None:
        for task in (self._pump_task, self._mo_task):
            if task is not None:
                task.cancel()
        if self.server is not None:
            self.server.close()
            for conn in list(self.connections):
                conn.close()
            await self.server.wait_closed()
        self.flush_record()
        if self._record is not None:
            self._record.close()

    def go_down(self) -> None:
        """Refuse binds and drop every connection (no unbind), like an SMSC outage."""
        self.stats.down = True
        for conn in list(self.connections):
            conn.abort()

    def come_up(self) -> None:
        self.stats.down = False
        self.config.refuse_binds = False

    # --- submit_sm ---------------------------------------------------------

    def on_submit(self, conn: _SmscConnection, pdu: SubmitSm) -> None:
        cfg = self.config
        stats = self.stats
        stats.submit_sm += 1
        if cfg.drop_after:
            conn.submits += 1
            # A connection that starts leaving submits unanswered is booked for a
            # drop there and then, so no other connection is left half-answered
            # (undropped) when --drop-count runs out.
            if conn.submits > cfg.drop_after - cfg.drop_unanswered and self._book_drop(conn):
                stats.unanswered += 1
                if cfg.drop_taken:
                    self._accept(conn, pdu, respond=False)
                if conn.submits >= cfg.drop_after:
                    self._drop(conn)
                return
        now = time.time()
        if cfg.tps:
            second = int(now)
            if second != self._tps_second:
                self._tps_second, self._tps_used = second, 0
            if self._tps_used >= cfg.tps:
                self._respond(conn, pdu.make_resp(command_status=CommandStatus.ESME_RTHROTTLED))
                return
            self._tps_used += 1
        if self._err_cum:
            r = self.rng.random()
            for threshold, status in self._err_cum:
                if r < threshold:
                    self._respond(conn, pdu.make_resp(command_status=status))
                    return
        self._accept(conn, pdu, respond=True, now=now)
        if cfg.drop_after and conn.submits >= cfg.drop_after and self._book_drop(conn):
            self._drop(conn)

    def _may_drop(self) -> bool:
        return not self.config.drop_count or self._drops_left > 0

    def _book_drop(self, conn: _SmscConnection) -> bool:
        if conn.drop_booked:
            return True
        if not self._may_drop():
            return False
        conn.drop_booked = True
        if self.config.drop_count:
            self._drops_left -= 1
        return True

    def _drop(self, conn: _SmscConnection) -> None:
        self.stats.drops += 1
        conn.dropped = True
        self.update_receivers()
        conn.drop()

    def _accept(self, conn: _SmscConnection, pdu: SubmitSm, *, respond: bool,
                now: float | None = None) -> None:
        cfg = self.config
        stats = self.stats
        now = time.time() if now is None else now
        message_id = self.next_id()
        # What the handset would get: the text (or message_payload) and, for SAR
        # parts, which segment it is.
        content = pdu.short_message
        if not content and pdu.tlvs:
            content = b"".join(pdu.tlvs.get(t, b"") for t in _CONTENT_TLVS)
        elif pdu.tlvs and Tag.SAR_SEGMENT_SEQNUM in pdu.tlvs:
            content += b"".join(pdu.tlvs.get(t, b"") for t in _CONTENT_TLVS)
        digest = hashlib.blake2b(
            pdu.destination_addr.encode() + b"\0" + content, digest_size=8
        ).digest()
        if digest in self.seen:
            stats.duplicates += 1
        else:
            self.seen.add(digest)
            stats.unique += 1
        stats.accepted += 1
        if not stats.first_submit_at:
            stats.first_submit_at = now
        stats.last_submit_at = now
        stat = self._stat_single or self._pick_stat()
        if self._record is not None:
            self._record_buf.append(
                f'{{"id":"{message_id}","to":"{pdu.destination_addr}","h":"{digest.hex()}",'
                f'"t":{now:.3f},"stat":"{stat}"}}\n'
            )
        resp = encode_submit_sm_resp_ok(pdu.sequence_number, message_id.encode()) if (
            respond) else None
        pending = None
        if pdu.registered_delivery & 0x03:
            if self._receipts_to_drop > 0:
                self._receipts_to_drop -= 1
                stats.receipts_dropped += 1
            else:
                pending = _Pending(conn.system_id, pdu, message_id, stat, now)
        if pending is not None and resp is not None and cfg.receipt_before_resp and (
            self.rng.random() < cfg.receipt_before_resp
        ):
            pending.held = (conn, resp)
            stats.receipts_before_resp += 1
            self._send_receipt(pending)
            asyncio.get_running_loop().call_later(HELD_RESP_TIMEOUT, self._release, pending)
            return
        if resp is not None:
            self._respond_raw(conn, resp)
        if pending is not None:
            if cfg.receipt_dist == "fixed":
                self._fifo.append((time.monotonic() + cfg.receipt_delay, pending))
            else:
                self._schedule(pending, self._receipt_wait())

    def _pick_stat(self) -> str:
        r = self.rng.random()
        for threshold, stat in self._stat_cum:
            if r < threshold:
                return stat
        return self._stat_cum[-1][1]

    def _respond(self, conn: _SmscConnection, resp: Any) -> None:
        self._acks[resp.command_status] += 1
        if self.config.ack_latency > 0:
            asyncio.get_running_loop().call_later(self.config.ack_latency, conn.send_quiet, resp)
        else:
            conn.send_quiet(resp)

    def _respond_raw(self, conn: _SmscConnection, resp: bytes) -> None:
        """An ESME_ROK submit_sm_resp already encoded."""
        self._acks[0] += 1
        if self.config.ack_latency > 0:
            asyncio.get_running_loop().call_later(self.config.ack_latency, conn.write_raw, resp)
        else:
            conn.write_raw(resp)

    # --- receipts ------------------------------------------------------------

    def _receipt_wait(self) -> float:
        cfg = self.config
        if cfg.receipt_dist == "uniform":
            return self.rng.uniform(0, 2 * cfg.receipt_delay)
        if cfg.receipt_dist == "exponential" and cfg.receipt_delay > 0:
            return self.rng.expovariate(1 / cfg.receipt_delay)
        return cfg.receipt_delay

    def _schedule(self, pending: _Pending, wait: float) -> None:
        self._tick += 1
        heapq.heappush(self._timers, (time.monotonic() + wait, self._tick, pending))

    async def _pump(self) -> None:
        """Send receipts that are due; one timer for all of them (cheaper than a
        task or call_later per receipt at tens of thousands a second)."""
        timers = self._timers
        fifo = self._fifo
        send = self._send_receipt
        while True:
            now = time.monotonic()
            while fifo and fifo[0][0] <= now:
                send(fifo.popleft()[1])
            while timers and timers[0][0] <= now:
                send(heapq.heappop(timers)[2])
            await asyncio.sleep(0.005)

    def _receiver(
        self, pending: _Pending, prefer: _SmscConnection | None
    ) -> _SmscConnection | None:
        if prefer is not None and prefer.can_receive and prefer.live:
            return prefer
        live = self._receivers.get(pending.system_id)
        if not live:
            return None
        if len(live) == 1:
            return live[0]
        self._rr += 1
        return live[self._rr % len(live)]

    def update_receivers(self) -> None:
        receivers: dict[str, list[_SmscConnection]] = {}
        for c in self.connections:
            if c.can_receive and c.live:
                receivers.setdefault(c.system_id, []).append(c)
        self._receivers = receivers

    def _send_receipt(self, pending: _Pending) -> None:
        held = pending.held
        target = self._receiver(pending, held[0] if held else None)
        if target is None:
            self._retry(pending)
            return
        stat = pending.stat
        now = time.time()
        # Many SMSCs answer submit_sm in hex and write receipts in decimal.
        rid = str(int(pending.message_id, 16)) if self.config.receipt_ids == "dec" else None
        text = (
            f"id:{rid or pending.message_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'}"
            f" submit date:{_receipt_date(pending.submitted)} done date:{_receipt_date(now)}"
            f" stat:{stat} err:{self._err_codes.get(stat, '001')} Text:"
        ).encode()
        pending.attempts += 1
        seq = target.session.next_sequence()
        target.write_raw(encode_receipt(seq, pending, text, _STATE[stat], rid))
        target.outstanding[seq] = (pending, time.monotonic())
        self.stats.receipts_sent += 1

    def receipt_answered(self, pending: _Pending, status: int) -> None:
        if status == CommandStatus.ESME_ROK:
            stats = self.stats
            stats.receipts_acked += 1
            stats.last_receipt_acked_at = time.time()
            if not stats.first_receipt_acked_at:
                stats.first_receipt_acked_at = stats.last_receipt_acked_at
            self._receipt_stats[pending.stat] += 1
            self._release(pending)
        else:
            self._retry(pending)

    def receipt_lost(self, pending: _Pending) -> None:
        """The bind carrying it closed or it timed out: a real SMSC tries again later."""
        self._retry(pending)

    def _retry(self, pending: _Pending) -> None:
        if pending.attempts >= RECEIPT_ATTEMPTS:
            self.stats.receipts_failed += 1
            self._release(pending)
            return
        self.stats.receipts_retried += 1
        if pending.held is not None:
            # Do not hold a submit_sm_resp hostage to a receipt nobody takes.
            self._release(pending)
        self._schedule(pending, min(10.0, 0.25 * 2 ** pending.attempts))

    def _release(self, pending: _Pending) -> None:
        held, pending.held = pending.held, None
        if held is not None:
            conn, resp = held
            self._respond_raw(conn, resp)

    # --- binds and MO ----------------------------------------------------------

    def on_bind(self, conn: _SmscConnection, pdu: Any) -> None:
        cfg = self.config
        if self.stats.down or cfg.refuse_binds:
            self.stats.binds_refused += 1
            conn.send_quiet(pdu.make_resp(command_status=CommandStatus.ESME_RBINDFAIL))
            return
        if cfg.system_id and (pdu.system_id != cfg.system_id or pdu.password != cfg.password):
            self.stats.binds_refused += 1
            conn.send_quiet(pdu.make_resp(command_status=CommandStatus.ESME_RINVPASWD))
            return
        conn.system_id = pdu.system_id
        conn.can_receive = not isinstance(pdu, BindTransmitter)
        conn.bound = True
        self.stats.binds += 1
        conn.send_quiet(pdu.make_resp(system_id="smsgw-sim"))
        self.update_receivers()

    async def _generate_mo(self) -> None:
        cfg = self.config
        interval = 0.01
        owed = 0.0
        n = 0
        while not cfg.mo_count or n < cfg.mo_count:
            await asyncio.sleep(interval)
            owed += cfg.mo_rate * interval
            receivers = [c for c in self.connections if c.can_receive and c.transport is not None]
            if not receivers:
                continue
            while owed >= 1 and (not cfg.mo_count or n < cfg.mo_count):
                owed -= 1
                n += 1
                source = cfg.mo_from[n % len(cfg.mo_from)]
                text = cfg.mo_text.replace("{n}", str(n))
                mo = DeliverSm(
                    source_addr_ton=1, source_addr_npi=1, source_addr=source,
                    dest_addr_ton=0, dest_addr_npi=1, destination_addr=cfg.mo_to,
                    esm_class=0, short_message=text.encode(),
                )
                try:
                    receivers[n % len(receivers)].send_request(mo, None)
                except Exception:
                    continue
                self.stats.mo_sent += 1

    # --- summary ---------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        s = self.stats
        s.acks = {f"0x{k:08x}": v for k, v in sorted(self._acks.items())}
        s.receipts = dict(sorted(self._receipt_stats.items()))
        s.bound_now = sum(1 for c in self.connections if c.bound)
        now = time.time()
        if not s.series or now - s.series[-1][0] >= 0.9:
            s.series.append((round(now, 3), s.accepted, s.receipts_acked))
            del s.series[:-STATS_SERIES_MAX]
        out = {k: v for k, v in vars(s).items()}
        out["pending_receipts"] = len(self._timers)
        out["t"] = now
        return out

    def flush_record(self) -> None:
        if self._record is not None and self._record_buf:
            self._record.write("".join(self._record_buf))
            self._record_buf.clear()
            self._record.flush()

    def write_stats(self) -> dict[str, Any]:
        summary = self.summary()
        self.flush_record()
        if self.config.stats_file:
            tmp = Path(self.config.stats_file + ".tmp")
            tmp.write_text(json.dumps(summary))
            tmp.replace(self.config.stats_file)
        return summary


class _SmscConnection(SmppProtocol):
    role = Role.SMSC

    def __init__(self, sim: SmscSimulator) -> None:
        super().__init__()
        self.sim = sim
        self.system_id = ""
        self.can_receive = False
        self.bound = False
        self.dropped = False
        self.drop_booked = False
        self.submits = 0
        # our deliver_sm requests waiting for a response: sequence → (receipt or None, sent at)
        self.outstanding: dict[int, tuple[_Pending | None, float]] = {}

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if self.sim.stats.down:
            transport.abort()
            return
        self.sim.connections.append(self)

    def data_received(self, data: bytes) -> None:
        # Responses to our deliver_sm are matched here, without a future each.
        if self.dropped:
            return  # closed by --drop-after: what was still arriving is never read
        outstanding = self.outstanding
        sim = self.sim
        for event in self.session.receive_data(data):
            if isinstance(event, PduError):
                self.on_pdu_error(event)
                continue
            if isinstance(event, ConnectionFatal):
                self.close()
                return
            if event.command_id & 0x80000000:
                entry = outstanding.pop(event.sequence_number, None)
                if entry is None:
                    future = self.pending.pop(event.sequence_number, None)
                    if future is not None and not future.done():
                        future.set_result(event)
                elif entry[0] is None:
                    sim.stats.mo_acked += event.command_status == 0
                else:
                    sim.receipt_answered(entry[0], event.command_status)
            elif isinstance(event, SubmitSm):
                sim.on_submit(self, event)
            else:
                self.on_request(event)
            if self.transport is None or self.dropped:
                return

    def on_request(self, pdu: Any) -> None:
        if isinstance(pdu, BindTransmitter | BindReceiver | BindTransceiver):
            self.sim.on_bind(self, pdu)
        else:
            super().on_request(pdu)

    @property
    def live(self) -> bool:
        return self.transport is not None and not self.dropped

    def write_raw(self, data: bytes) -> None:
        """Queue PDU bytes encoded outside the session (hot path) for this
        iteration's batched write."""
        if self.transport is None or self.dropped:
            return
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def send_quiet(self, pdu: Any) -> None:
        if self.transport is not None and not self.dropped:
            self.send(pdu)

    def send_request(self, pdu: Any, pending: _Pending | None) -> None:
        if self.dropped:
            raise ConnectionError("dropped")
        self.send(pdu)
        self.outstanding[pdu.sequence_number] = (pending, time.monotonic())

    def expire(self, now: float) -> None:
        """Give up on deliver_sm unanswered for RECEIPT_RESP_TIMEOUT (retried elsewhere)."""
        late = [seq for seq, (_, at) in self.outstanding.items()
                if now - at > RECEIPT_RESP_TIMEOUT]
        for seq in late:
            pending, _ = self.outstanding.pop(seq)
            self.session.forget(seq)
            if pending is not None:
                self.sim.receipt_lost(pending)

    def drop(self) -> None:
        """Send what was answered, then FIN (no unbind). Reading goes on, discarding,
        so PDUs the ESME sends meanwhile cause no RST that would destroy responses
        it has not read yet; the connection is aborted if the ESME never closes."""
        self._flush()
        transport = self.transport
        if transport is None:
            return
        if transport.can_write_eof():
            transport.write_eof()
            asyncio.get_running_loop().call_later(2.0, self.abort)
        else:
            transport.close()

    def eof_received(self) -> bool | None:
        if self.dropped and self.transport is not None:
            self.transport.close()
        return None

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def on_closed(self) -> None:
        if self in self.sim.connections:
            self.sim.connections.remove(self)
        self.sim.update_receivers()
        lost, self.outstanding = self.outstanding, {}
        for pending, _ in lost.values():
            if pending is not None:
                self.sim.receipt_lost(pending)


async def run_simulator(config: SimConfig, ready: asyncio.Event | None = None) -> dict[str, Any]:
    sim = SmscSimulator(config)
    await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, sim.go_down)
    loop.add_signal_handler(signal.SIGUSR2, sim.come_up)
    print(json.dumps({"event": "smsc_sim_listening", "host": config.host, "port": config.port}),
          flush=True)
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set():
            sim.write_stats()
            now = time.monotonic()
            for conn in list(sim.connections):
                conn.expire(now)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
    finally:
        summary = sim.write_stats()
        await sim.close()
    return summary


def _stat_err(text: str) -> dict[str, str]:
    out = {}
    for item in text.split(","):
        if item.strip():
            stat, _, err = item.partition(":")
            out[stat.strip().upper()] = err.strip()
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--host", default="127.0.0.1")
    a("--port", type=int, default=2776)
    a("--system-id", default="", help="required system_id (default: any)")
    a("--password", default="")
    a("--ack-latency", type=float, default=0.0, help="seconds before each submit_sm_resp")
    a("--tps", type=int, default=0,
      help="accepted submit_sm per second across all binds; more → ESME_RTHROTTLED (0: no cap)")
    a("--error-rate", action="append", default=[], metavar="STATUS:RATIO",
      help="answer RATIO of submit_sm with command_status STATUS, e.g. 0x58:0.01 (repeatable)")
    a("--receipt-delay", type=float, default=0.05, help="seconds (mean) from submit to receipt")
    a("--receipt-dist", choices=("fixed", "uniform", "exponential"), default="fixed")
    a("--stat-mix", default="DELIVRD:1", help="e.g. DELIVRD:0.97,UNDELIV:0.02,EXPIRED:0.01")
    a("--stat-err", default="", help="err code per stat, e.g. UNDELIV:011,REJECTD:002")
    a("--receipt-before-resp", type=float, default=0.0, metavar="RATIO",
      help="share of receipts sent before the submit_sm_resp (the resp waits for the ack)")
    a("--drop-receipts", type=int, default=0, metavar="N", help="never send the first N receipts")
    a("--drop-after", type=int, default=0, metavar="N",
      help="close a connection (no unbind) when it has received N submit_sm")
    a("--drop-unanswered", type=int, default=0, metavar="K",
      help="leave the last K submit_sm before a drop without a response")
    a("--drop-taken", action="store_true",
      help="unanswered submit_sm were taken (counted and receipted), not lost")
    a("--drop-count", type=int, default=0, help="drop at most this many connections (0: all)")
    a("--receipt-ids", choices=("hex", "dec"), default="hex",
      help="how receipts write the message id (submit_sm_resp always uses hex)")
    a("--first-id", default="", metavar="HEX",
      help="the first message id handed out; the next count up from it, keeping its width "
           "and case (e.g. 0c2800000001, 0c2800000002, ...); default: a random prefix")
    a("--refuse-binds", action="store_true",
      help="answer every bind ESME_RBINDFAIL (SIGUSR1: go down, SIGUSR2: come back up)")
    a("--start-down", action="store_true",
      help="start down (binds refused) until SIGUSR2, e.g. to build a backlog")
    a("--mo-rate", type=float, default=0.0, help="mobile-originated deliver_sm per second")
    a("--mo-text", default="TD", help="MO text; {n} is replaced by a counter")
    a("--mo-from", default="8613800000000", help="comma-separated originating numbers")
    a("--mo-to", default="10690000", help="destination (the service number)")
    a("--mo-count", type=int, default=0, help="stop after this many MO (0: unlimited)")
    a("--stats-file", default=None, help="JSON summary, rewritten every second and on exit")
    a("--record", default=None, metavar="FILE",
      help="append one JSON line per acknowledged submit_sm (id, to, content hash, t, stat)")
    a("--seed", type=int, default=None, help="random seed for error and stat draws")
    a("--tls-cert", default=None, help="PEM certificate chain: serve SMPP over TLS only")
    a("--tls-key", default=None, help="PEM private key of --tls-cert")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    error_rates: list[tuple[int, float]] = []
    for item in args.error_rate:
        error_rates += _parse_ratio_list(item, key_int=True)
    return SimConfig(
        host=args.host, port=args.port, system_id=args.system_id, password=args.password,
        ack_latency=args.ack_latency, tps=args.tps, error_rates=error_rates,
        receipt_delay=args.receipt_delay, receipt_dist=args.receipt_dist,
        stat_mix=_parse_ratio_list(args.stat_mix), stat_err=_stat_err(args.stat_err),
        receipt_before_resp=args.receipt_before_resp, drop_receipts=args.drop_receipts,
        drop_after=args.drop_after, drop_unanswered=args.drop_unanswered,
        drop_taken=args.drop_taken, drop_count=args.drop_count, refuse_binds=args.refuse_binds,
        receipt_ids=args.receipt_ids, first_id=args.first_id,
        start_down=args.start_down,
        mo_rate=args.mo_rate, mo_text=args.mo_text,
        mo_from=[x.strip() for x in args.mo_from.split(",") if x.strip()],
        mo_to=args.mo_to, mo_count=args.mo_count, stats_file=args.stats_file,
        record=args.record, seed=args.seed, tls_cert=args.tls_cert, tls_key=args.tls_key,
    )


def main(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"smsc-sim: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop

        summary = uvloop.run(run_simulator(config))
    except ImportError:
        summary = asyncio.run(run_simulator(config))
    summary.pop("series", None)
    json.dump({"event": "smsc_sim_summary", **summary}, sys.stdout)
    print()
    return 0
