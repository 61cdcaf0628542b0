"""Delivery against a misbehaving SMSC (the simulator's failure injection):
throttling, dropped binds, failed receipts, receipts before responses. Each
test ends with an audit: every accepted message has exactly one final status,
and the SMSC never saw again a part whose acknowledgement the gateway recorded."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtest.harness import GatewayProcess
from protocols.receipt import normalize_message_id
from tests.integration.conftest import AUTH, SimProcess, submit, wait_final, wait_for, write_config


def smpp(name: str, port: int, **extra: Any) -> str:
    lines = [f"[connectors.{name}]", f"port = {port}", 'system_id = "smsgw"', 'password = "x"']
    return "\n".join(lines + [f"{k} = {json.dumps(v)}" for k, v in extra.items()])


def records(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row["sid"] = normalize_message_id(row["id"])
    return rows


def run(tmp_path: Path, sim_args: list[str], count: int, text: str = "msg {i}",
        connector_extra: dict[str, Any] | None = None, extra: str = "",
        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Send `count` messages through one simulator; return final bodies, the
    simulator's per-submit records and its stats."""
    record = tmp_path / "record.jsonl"
    sim = SimProcess(tmp_path, "--record", str(record), *sim_args).start()
    config = write_config(tmp_path, smpp("sim", sim.port, **(connector_extra or {})),
                          '[[routes]]\nconnectors = ["sim"]', extra)
    try:
        with GatewayProcess(tmp_path, config=config) as gw, \
                httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            # One number per message: the simulator tells duplicates by (number, bytes).
            ids = [submit(client, to=f"+86138{i:08d}", text=text.format(i=i))
                   for i in range(count)]
            bodies = [wait_final(client, m, timeout=60) for m in ids]
    finally:
        sim.stop()  # flushes its record and writes its final stats
    return bodies, records(record), sim.stats()


def assert_never_resent_after_recorded(bodies: list[dict[str, Any]],
                                       rows: list[dict[str, Any]]) -> None:
    stored = {sid for b in bodies for sid in b["smsc_message_ids"].values()}
    by_content: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for row in rows:
        by_content[row["h"]].append((row["t"], row["sid"]))
    for submissions in by_content.values():
        submissions.sort()
        assert not {sid for _, sid in submissions[:-1]} & stored


def test_throttling_smsc_still_gets_everything_in_part_order(tmp_path: Path) -> None:
    text = "Throttled but in order, part by part. " * 9 + "{i}"  # 3 GSM parts
    bodies, rows, stats = run(tmp_path, ["--tps", "40"], 30, text)
    assert {b["status"] for b in bodies} == {"delivered"}
    assert stats["duplicates"] == 0
    assert stats["acks"].get("0x00000058", 0) > 0  # it did throttle
    # The record lists submit_sm in the order the SMSC accepted them (its
    # timestamps have millisecond resolution, too coarse to order by).
    order = {row["sid"]: n for n, row in enumerate(rows)}
    for b in bodies:
        ids = b["smsc_message_ids"]
        assert sorted(ids) == ["1", "2", "3"]
        assert order[ids["1"]] < order[ids["2"]] < order[ids["3"]]
    assert_never_resent_after_recorded(bodies, rows)


def test_tps_limit_counts_parts_not_messages(tmp_path: Path) -> None:
    # 2 three-part messages + 4 single ones = 10 submit_sm at 10 per second:
    # at least 0.9 s between the first and the last (6 messages would need 0.5 s).
    record = tmp_path / "record.jsonl"
    sim = SimProcess(tmp_path, "--record", str(record)).start()
    config = write_config(tmp_path, smpp("sim", sim.port, tps=10),
                          '[[routes]]\nconnectors = ["sim"]')
    try:
        with GatewayProcess(tmp_path, config=config) as gw, \
                httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            long = "x" * 400
            texts = (long + "1", long + "2", "a", "b", "c", "d")
            ids = [submit(client, to=f"+86139{i:08d}", text=t) for i, t in enumerate(texts)]
            for m in ids:
                wait_final(client, m)
    finally:
        sim.stop()  # flushes its record
    rows = records(record)
    assert len(rows) == 10
    times = sorted(r["t"] for r in rows)
    assert times[-1] - times[0] >= 0.85


def test_bind_dropped_mid_window_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    bodies, rows, stats = run(
        tmp_path, ["--drop-after", "40", "--drop-unanswered", "5", "--drop-count", "3"], 150,
        connector_extra={"window": 20, "response_timeout": 2.0},
    )
    assert {b["status"] for b in bodies} == {"delivered"}
    assert stats["drops"] >= 1
    assert_never_resent_after_recorded(bodies, rows)


def test_receipts_before_responses_are_not_lost(tmp_path: Path) -> None:
    bodies, _rows, stats = run(tmp_path, ["--receipt-before-resp", "1.0"], 40)
    assert {b["status"] for b in bodies} == {"delivered"}
    assert stats["duplicates"] == 0


def test_multipart_message_is_delivered_only_if_every_part_is(tmp_path: Path) -> None:
    text = "Three parts; each gets its own receipt and its own fate. " * 6 + "{i}"
    bodies, rows, _ = run(
        tmp_path, ["--stat-mix", "DELIVRD:0.8,UNDELIV:0.2", "--stat-err", "UNDELIV:001",
                   "--seed", "7"], 20, text,
    )
    stat_of = {row["sid"]: row["stat"] for row in rows}
    outcomes = set()
    for b in bodies:
        assert b["parts"] == 3
        stats = {stat_of[sid] for sid in b["smsc_message_ids"].values()}
        expected = "delivered" if stats == {"DELIVRD"} else "undelivered"
        assert b["status"] == expected, (b, stats)
        outcomes.add(expected)
    assert outcomes == {"delivered", "undelivered"}  # the seed gives both kinds


def test_undeliv_receipt_is_resent_once_on_the_fallback(tmp_path: Path) -> None:
    primary = SimProcess(tmp_path, "--stat-mix", "UNDELIV:1", "--stat-err", "UNDELIV:011").start()
    backup = SimProcess(tmp_path).start()
    config = write_config(
        tmp_path, smpp("primary", primary.port) + "\n" + smpp("backup", backup.port),
        '[[routes]]\nconnectors = ["primary", "backup"]',
    )
    try:
        with GatewayProcess(tmp_path, config=config) as gw, \
                httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            mid = submit(client, text="try the other carrier")
            body = wait_final(client, mid)
        assert body["status"] == "delivered"
        assert body["connector"] == "backup"
        assert any("resend part 1 on backup" in h["detail"] for h in body["history"])
        wait_for(lambda: primary.stats()["unique"] == 1 and backup.stats()["unique"] == 1, 10)
    finally:
        primary.stop()
        backup.stop()


def _spacing(tmp_path: Path, extra: str, numbers: list[str]) -> list[float]:
    """Send one message to each number; the simulator's submit times, sorted."""
    record = tmp_path / "record.jsonl"
    sim = SimProcess(tmp_path, "--record", str(record)).start()
    config = write_config(tmp_path, smpp("sim", sim.port), '[[routes]]\nconnectors = ["sim"]',
                          extra)
    try:
        with GatewayProcess(tmp_path, config=config) as gw, \
                httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            ids = [submit(client, to=n, text=f"cap {i}") for i, n in enumerate(numbers)]
            for m in ids:
                assert wait_final(client, m)["status"] == "delivered"
    finally:
        sim.stop()
    return sorted(r["t"] for r in records(record))


def test_carrier_cap_applies_across_messages(tmp_path: Path) -> None:
    # 8 China Mobile messages at 8 per second: at least 7/8 s from first to last.
    times = _spacing(tmp_path, '[carriers."China Mobile"]\ntps = 8\n',
                     [f"+86138{i:08d}" for i in range(8)])
    assert len(times) == 8
    assert times[-1] - times[0] >= 0.8


def test_recipient_rate_defers_instead_of_dropping(tmp_path: Path) -> None:
    # 3 messages to one number at 60 a minute: at least 2 s from first to last,
    # and all of them delivered.
    times = _spacing(tmp_path, "[throttle]\nrecipient_per_minute = 60\n",
                     ["+8613800138000"] * 3)
    assert len(times) == 3
    assert times[-1] - times[0] >= 1.9


def test_smsc_that_reports_in_decimal_what_it_acknowledged_in_hex(tmp_path: Path) -> None:
    bodies, _rows, stats = run(
        tmp_path, ["--receipt-ids", "dec"], 5,
        connector_extra={"resp_id_format": "hex", "receipt_id_format": "dec"},
    )
    assert {b["status"] for b in bodies} == {"delivered"}
    assert stats["receipts_acked"] == 5


@pytest.mark.parametrize(("concat", "submits"), [("udh16", 4), ("sar", 3), ("payload", 1)])
def test_concatenation_modes_reach_the_smsc_and_settle(tmp_path: Path, concat: str,
                                                        submits: int) -> None:
    # 201 UCS-2 characters: 4 parts of 66 with 16-bit UDH, 3 of 70 with SAR TLVs,
    # one message_payload.
    text = "您好" * 100 + "{i}"
    bodies, _rows, stats = run(tmp_path, [], 2, text, connector_extra={"concat": concat})
    for b in bodies:
        assert b["status"] == "delivered"
        assert b["parts"] == submits
        assert len(b["smsc_message_ids"]) == submits
    assert stats["unique"] == 2 * submits and stats["duplicates"] == 0
