"""The simulator's failure injection and counts, driven by an independent ESME
(smpplib) against a real `smsgw smsc-sim` process on a port picked at run time."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import smpplib.exceptions

from loadtest.harness import SimulatorProcess
from loadtest.smsc_sim import SimConfig, SmscSimulator

from .esme import Esme

ROK, RTHROTTLED, RMSGQFUL, RBINDFAIL = 0x00, 0x58, 0x14, 0x0D


def messages(n: int, tag: str = "m") -> list[tuple[str, bytes]]:
    return [(f"86138{i:08d}", f"{tag} token {i}".encode()) for i in range(n)]


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator:
    started: list[SimulatorProcess] = []

    def make(*args: str, record: bool = False) -> SimulatorProcess:
        sim = SimulatorProcess(tmp_path, list(args), record=record)
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


def wait_stats(sim: SimulatorProcess, cond, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stats = sim.stats()
        if cond(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


def test_counts_match_acks_across_bind_drops(sim_factory) -> None:
    # Each connection is dropped (no unbind) on its 30th submit_sm, the last 5
    # unanswered and lost; the ESME resends those on a new bind.
    sim = sim_factory("--drop-after", "30", "--drop-unanswered", "5", "--drop-count", "3")
    esme = Esme(sim.port, registered_delivery=0)
    result = esme.submit_all(messages(100), window=10)
    esme.close()
    assert Counter(result.values()) == {ROK: 100}
    assert esme.reconnects == 3
    stats = wait_stats(sim, lambda s: s["accepted"] == 100)
    assert stats["drops"] == 3
    assert stats["unanswered"] == 15
    assert stats["submit_sm"] == 115  # every resend was seen ...
    assert (stats["unique"], stats["duplicates"], stats["accepted"]) == (100, 0, 100)  # ... once
    assert stats["acks"] == {"0x00000000": 100}
    assert len(set(esme.acked.values())) == 100


def test_unanswered_but_taken_submits_count_as_duplicates(sim_factory) -> None:
    # The SMPP window every gateway has: the SMSC took the message, the
    # response was lost with the bind, the ESME resends -> the handset gets two.
    sim = sim_factory("--drop-after", "30", "--drop-unanswered", "5", "--drop-count", "1",
                      "--drop-taken")
    esme = Esme(sim.port, registered_delivery=0)
    result = esme.submit_all(messages(50), window=10)
    esme.close()
    assert Counter(result.values()) == {ROK: 50}
    stats = wait_stats(sim, lambda s: s["accepted"] == 55)
    assert (stats["unique"], stats["duplicates"], stats["unanswered"]) == (50, 5, 5)


def test_tps_cap_answers_throttled(sim_factory) -> None:
    sim = sim_factory("--tps", "20")
    esme = Esme(sim.port, registered_delivery=0)
    started = time.monotonic()
    result = esme.submit_all(messages(100), window=50)
    elapsed = time.monotonic() - started
    esme.close()
    counts = Counter(result.values())
    assert counts[RTHROTTLED] > 0
    assert 0 < counts[ROK] <= 20 * (int(elapsed) + 2)
    stats = wait_stats(sim, lambda s: s["submit_sm"] == 100)
    assert stats["acks"] == {"0x00000000": counts[ROK], "0x00000058": counts[RTHROTTLED]}
    assert stats["unique"] == counts[ROK]


def test_error_rate_per_command_status(sim_factory) -> None:
    sim = sim_factory("--error-rate", "0x14:0.3", "--error-rate", "0x58:0.1", "--seed", "7")
    esme = Esme(sim.port, registered_delivery=0)
    result = esme.submit_all(messages(300), window=50)
    esme.close()
    counts = Counter(result.values())
    assert 50 <= counts[RMSGQFUL] <= 130
    assert 10 <= counts[RTHROTTLED] <= 60
    assert counts[ROK] == 300 - counts[RMSGQFUL] - counts[RTHROTTLED]
    stats = wait_stats(sim, lambda s: s["submit_sm"] == 300)
    assert stats["acks"]["0x00000014"] == counts[RMSGQFUL]
    assert stats["unique"] == counts[ROK]  # refused messages are not counted as taken


def test_stat_mix_and_err_codes_in_receipts(sim_factory) -> None:
    sim = sim_factory("--stat-mix", "DELIVRD:0.5,UNDELIV:0.3,EXPIRED:0.2",
                      "--stat-err", "UNDELIV:011", "--receipt-delay", "0.05",
                      "--receipt-dist", "exponential", "--seed", "3")
    esme = Esme(sim.port)
    result = esme.submit_all(messages(200), window=50)
    esme.read_for(5, until=lambda: len(esme.of("receipt")) >= 200)
    esme.close()
    assert Counter(result.values()) == {ROK: 200}
    receipts = esme.of("receipt")
    assert len(receipts) == 200
    stats_seen = Counter(re.search(rb"stat:(\w+)", r.text).group(1).decode() for r in receipts)
    assert set(stats_seen) == {"DELIVRD", "UNDELIV", "EXPIRED"}
    for r in receipts:
        if b"stat:UNDELIV" in r.text:
            assert b"err:011" in r.text
    ids = {re.search(rb"id:(\S+)", r.text).group(1).decode() for r in receipts}
    assert ids == set(esme.acked.values())
    stats = wait_stats(sim, lambda s: s["receipts_acked"] == 200)
    assert stats["receipts"] == dict(stats_seen)


def test_first_id_sets_the_ids_handed_out_leading_zeros_and_case_kept(sim_factory) -> None:
    # window 1: the ids are handed out in submit order.
    sim = sim_factory("--first-id", "0c2800000001", "--receipt-delay", "0")
    esme = Esme(sim.port)
    esme.submit_all(messages(3), window=1)
    esme.read_for(3, until=lambda: len(esme.of("receipt")) >= 3)
    esme.close()
    assert esme.acked == {0: "0c2800000001", 1: "0c2800000002", 2: "0c2800000003"}
    # the receipt says the same id, zero included
    ids = {re.search(rb"id:(\S+)", r.text).group(1).decode() for r in esme.of("receipt")}
    assert ids == set(esme.acked.values())

    upper = sim_factory("--first-id", "00FFFFFFFF")
    esme = Esme(upper.port, registered_delivery=0)
    esme.submit_all(messages(2), window=1)
    esme.close()
    assert esme.acked == {0: "00FFFFFFFF", 1: "0100000000"}


def test_first_id_that_is_not_hex_is_refused() -> None:
    for bad in ("0x0c28", "zz", "1" * 65):
        with pytest.raises(ValueError, match="hex digits"):
            SimConfig(first_id=bad)


def test_receipt_before_response(sim_factory) -> None:
    sim = sim_factory("--receipt-before-resp", "1", "--receipt-delay", "0")
    esme = Esme(sim.port)
    result = esme.submit_all(messages(20), window=1)
    esme.close()
    assert Counter(result.values()) == {ROK: 20}
    order = [(e.kind, e.message_id or re.search(rb"id:(\S+)", e.text).group(1).decode())
             for e in esme.events]
    for mid in esme.acked.values():
        assert order.index(("receipt", mid)) < order.index(("resp", mid))
    assert wait_stats(sim, lambda s: s["receipts_acked"] == 20)["receipts_before_resp"] == 20


def test_drop_receipts_sends_fewer(sim_factory) -> None:
    sim = sim_factory("--drop-receipts", "2", "--receipt-delay", "0")
    esme = Esme(sim.port)
    esme.submit_all(messages(10), window=10)
    esme.read_for(1.0, until=lambda: len(esme.of("receipt")) >= 10)
    esme.close()
    assert len(esme.of("receipt")) == 8
    assert sim.stats()["receipts_dropped"] == 2


def test_refuse_binds(sim_factory) -> None:
    sim = sim_factory("--refuse-binds")
    with pytest.raises(smpplib.exceptions.PDUError) as err:
        Esme(sim.port).connect()
    assert err.value.args[1] == RBINDFAIL
    assert wait_stats(sim, lambda s: s["binds_refused"] == 1)["binds"] == 0


def test_down_and_up_by_signal(sim_factory) -> None:
    sim = sim_factory()
    esme = Esme(sim.port, registered_delivery=0)
    esme.connect()
    sim.go_down()
    with pytest.raises(ConnectionError):
        for _ in range(20):
            esme.read_one()  # the SMSC closes the bind without unbind
    esme.client = None
    time.sleep(0.2)
    with pytest.raises((smpplib.exceptions.PDUError, smpplib.exceptions.ConnectionError)):
        Esme(sim.port).connect()
    sim.come_up()
    time.sleep(0.2)
    back = Esme(sim.port, registered_delivery=0)
    assert back.submit_all(messages(3)) == {0: ROK, 1: ROK, 2: ROK}
    back.close()


def test_ack_latency(sim_factory) -> None:
    sim = sim_factory("--ack-latency", "0.3")
    esme = Esme(sim.port, registered_delivery=0)
    started = time.monotonic()
    esme.submit_all(messages(2), window=1)
    assert time.monotonic() - started >= 0.6
    esme.close()


def test_mo_generation(sim_factory) -> None:
    sim = sim_factory("--mo-rate", "50", "--mo-count", "5", "--mo-text", "TD {n}",
                      "--mo-from", "8613900000001,8613900000002", "--mo-to", "106900")
    esme = Esme(sim.port)
    esme.connect()
    esme.read_for(3, until=lambda: len(esme.of("mo")) >= 5)
    esme.close()
    mo = esme.of("mo")
    assert [m.text for m in mo] == [f"TD {n}".encode() for n in range(1, 6)]
    assert {m.key for m in mo} == {b"8613900000001", b"8613900000002"}
    assert wait_stats(sim, lambda s: s["mo_acked"] == 5)["mo_sent"] == 5


def test_record_file_lists_every_acknowledged_submit(sim_factory) -> None:
    sim = sim_factory("--error-rate", "0x58:0.2", "--seed", "1", record=True)
    esme = Esme(sim.port, registered_delivery=0)
    result = esme.submit_all(messages(50), window=10)
    esme.close()
    sim.stop()
    lines = [json.loads(x) for x in sim.record_path.read_text().splitlines()]
    assert {x["id"] for x in lines} == set(esme.acked.values())
    assert len(lines) == Counter(result.values())[ROK]


def test_receipt_delay_distributions() -> None:
    for dist, lo, hi in (("fixed", 0.1, 0.1), ("uniform", 0.0, 0.2), ("exponential", 0.0, 5.0)):
        sim = SmscSimulator(SimConfig(receipt_delay=0.1, receipt_dist=dist, seed=1))
        waits = [sim._receipt_wait() for _ in range(2000)]
        assert lo <= min(waits) and max(waits) <= hi
        assert 0.08 < sum(waits) / len(waits) < 0.12


def test_hand_encoded_pdus_match_the_codec() -> None:
    from loadtest.smsc_sim import _Pending, encode_receipt, encode_submit_sm_resp_ok
    from protocols.smpp import DeliverSm, SubmitSm, SubmitSmResp, Tag, decode

    assert decode(encode_submit_sm_resp_ok(7, b"abc123")) == SubmitSmResp(7, message_id="abc123")
    submit = SubmitSm(source_addr_ton=5, source_addr="SHOP", dest_addr_ton=1, dest_addr_npi=1,
                      destination_addr="8613800138000", short_message=b"hi")
    pending = _Pending("sys", submit, "fe01", "UNDELIV", 0.0)
    text = b"id:fe01 sub:001 dlvrd:000 submit date:2401011200 done date:2401011201 stat:UNDELIV"
    got = decode(encode_receipt(9, pending, text, 5))
    want = DeliverSm(9, source_addr_ton=1, source_addr_npi=1, source_addr="8613800138000",
                     dest_addr_ton=5, dest_addr_npi=0, destination_addr="SHOP",
                     esm_class=4, short_message=text)
    want.set(Tag.RECEIPTED_MESSAGE_ID, "fe01")
    want.set(Tag.MESSAGE_STATE, 5)
    assert got == want


def test_start_down_until_signalled(sim_factory) -> None:
    sim = sim_factory("--start-down")
    with pytest.raises((smpplib.exceptions.PDUError, smpplib.exceptions.ConnectionError)):
        Esme(sim.port).connect()
    sim.come_up()
    time.sleep(0.2)
    esme = Esme(sim.port, registered_delivery=0)
    assert esme.submit_all(messages(2)) == {0: ROK, 1: ROK}
    esme.close()
