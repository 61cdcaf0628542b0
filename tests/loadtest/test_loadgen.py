"""The load generator and its audit against real processes (gateway, embedded
Redis, simulator) on loopback ports picked at run time, at small N."""

from __future__ import annotations

import itertools
from collections import Counter

import redis
import smpplib.client

from gateway.store.keys import msg_key
from loadtest import audit as audit_mod
from loadtest.loadgen import (
    Options,
    build_units,
    callback_report,
    class_sequence,
    execute,
    format_report,
    parse_mix,
    recipient,
    redis_url_of,
)


def small(**kw) -> Options:
    base = dict(messages=60, mix="marketing:0.95,otp:0.05", timeout=40, settle=1.0,
                final_wait=2.0, binds=2)
    base.update(kw)
    return Options(**base)


def test_clean_run_reports_everything_final_once() -> None:
    report = execute(small())
    a = report["audit"]
    assert (a["accepted"], a["lost"], a["duplicated"]) == (60, 0, 0)
    assert a["statuses"] == {"delivered": 60}
    assert a["smsc_unique"] == a["smsc_acknowledged"] == 60
    assert report["latency"]["otp"]["accept_to_submit"]["count"] == 3
    assert report["resources"]["gateway"]["peak_rss_mb"] > 0
    assert report["resources"]["redis"]["peak_rss_mb"] > 0


def test_audit_catches_a_lost_message() -> None:
    # The SMSC never sends one receipt: that message never becomes final.
    report = execute(small(sim="--drop-receipts 1"))
    a = report["audit"]
    assert (a["lost"], a["not_final"], a["duplicated"]) == (1, 1, 0)
    assert a["statuses"] == {"delivered": 59, "submitted": 1}


def test_audit_catches_a_duplicate_submitted_by_another_esme() -> None:
    seen = {}

    def inject(run, sent, sender) -> None:
        i = next(k for k, m in enumerate(sent.ids) if m and sent.classes[k] == "marketing")
        client = smpplib.client.Client("127.0.0.1", run.sim.port, timeout=5,
                                       allow_unknown_opt_params=True)
        client.connect()
        client.bind_transmitter(system_id="intruder", password="x")
        client.send_message(source_addr="SMSGW", source_addr_ton=5,
                            destination_addr=recipient(i).lstrip("+"), dest_addr_ton=1,
                            dest_addr_npi=1,
                            short_message=sender._text(i, "marketing").encode())
        resp = client.read_pdu()
        assert (resp.command, resp.status) == ("submit_sm_resp", 0)
        client.unbind()
        client.disconnect()
        seen["id"] = sent.ids[i]

    report = execute(small(before_audit=inject))
    a = report["audit"]
    assert (a["lost"], a["duplicated"]) == (0, 1)
    assert a["duplicated_messages"] == [seen["id"]]
    assert a["smsc_acknowledged"] == 61


def test_audit_counts_an_accepted_id_the_gateway_no_longer_knows() -> None:
    # A message answered 202 whose record vanished from Redis is lost, not left
    # out of the audit.
    gone = {}

    def forget_one(run, sent, sender) -> None:
        url = redis_url_of(run.gateway_pid)
        client = redis.Redis.from_url(url)
        try:
            gone["id"] = next(m for m in sent.ids if m)
            assert client.delete(msg_key(gone["id"])) == 1
        finally:
            client.close()

    report = execute(small(before_audit=forget_one))
    a = report["audit"]
    assert (a["accepted"], a["missing"], a["lost"]) == (60, 1, 1)
    assert a["audited"] == 59
    assert gone["id"] in {e["id"] for e in a["lost_examples"]}


def test_nothing_lost_or_duplicated_across_bind_drops() -> None:
    # Both binds are dropped (no unbind) on their 25th submit_sm with the last 4
    # unanswered (the SMSC never took them): the gateway must resend those 8.
    # Two drops for two binds of 75 messages each: every booked drop happens
    # (a bind that stopped getting traffic before its drop would hold its
    # unanswered submits until the gateway's response timeout instead).
    report = execute(small(messages=150, final_wait=5.0,
                           sim="--drop-after 25 --drop-unanswered 4 --drop-count 2"))
    a = report["audit"]
    assert (a["accepted"], a["lost"], a["duplicated"]) == (150, 0, 0), (a, report["smsc"])
    smsc = report["smsc"]
    assert (smsc["unique"], smsc["drops"], smsc["unanswered"]) == (150, 2, 8)
    assert smsc["submit_sm"] == 158


def test_class_mix_spreads_minority_classes_through_the_burst() -> None:
    seq = class_sequence(10_000, parse_mix("marketing:0.999,otp:0.001"))
    otp = [i for i, c in enumerate(seq) if c == "otp"]
    assert len(otp) == 10 and Counter(seq)["marketing"] == 9_990
    gaps = {b - a for a, b in itertools.pairwise(otp)}
    assert gaps == {1000}
    units = build_units(seq, "batch", 1000, {"otp"})
    assert sum(len(u.indices) for u in units) == 10_000
    assert {u.kind for u in units if u.msg_class == "otp"} == {"single"}
    assert max(len(u.indices) for u in units) == 1000


def test_percentiles_nearest_rank() -> None:
    p = audit_mod.percentiles([i / 100 for i in range(1, 101)])
    assert (p["p50"], p["p95"], p["p99"], p["max"], p["count"]) == (0.5, 0.95, 0.99, 1.0, 100)


def test_callbacks_single_every_final_reaches_the_receiver_once() -> None:
    # Today's gateway signs the body alone and sends every status; the new sender
    # signs "<timestamp>.<body>" and sends finals: either passes here.
    report = execute(small(messages=200, mix="marketing:1", mode="single", callbacks="single",
                           timeout=120, callback_quiet=20.0))
    cb = report["callbacks"]
    assert cb["ended"] == "all final callbacks received"
    assert (cb["finals"], cb["lost"], cb["duplicated"]) == (200, 0, 0), cb
    assert (cb["bad_signatures"], cb["status_mismatch"]) == (0, 0)
    assert cb["final_statuses"] == {"delivered": 200}
    assert cb["latency"]["all"]["count"] == 200
    assert cb["end_to_end_per_s"] > 0
    assert report["audit"]["lost"] == 0
    assert report["resources"]["receiver"]["peak_rss_mb"] > 0
    assert "callbacks at the receiver (single" in format_report(report)
    assert report["yardstick_ms"]["before"] > 0


def test_callback_report_counts_lost_duplicated_and_mismatched_finals() -> None:
    def seen(mid: str, status: str) -> audit_mod.Observed:
        return audit_mod.Observed(mid, "marketing", status, 100.0, 100.1, 100.2, [])

    observed = {m: seen(m, "delivered") for m in ("a", "b", "c")} | {"d": seen("d", "failed")}
    received = {
        "a": [101.0, 1, ["submitted", "delivered"]],
        "b": [102.0, 3, ["delivered"]],  # the final came three times
        "c": [None, 0, ["submitted"]],  # no final at the receiver: lost
        "d": [103.0, 1, ["undelivered"]],  # not the final status the gateway stored
    }
    stats = {"requests": 5, "events": 7, "first_request_at": 100.5, "last_request_at": 103.0,
             "redelivered_finals": 2, "second_finals": 0, "bad_signatures": 0,
             "series": [(100.0, 0, 0, 0), (101.0, 2, 2, 1), (102.0, 4, 6, 4)]}
    cb = callback_report(Options(callbacks="single"), "deadline passed", ["a", "b", "c", "d"],
                         {}, observed, received, stats, first_accept=100.0, gateway_cpu_s=0.7)
    assert (cb["finals"], cb["lost"], cb["lost_examples"], cb["duplicated"]) == (3, 1, ["c"], 2)
    assert (cb["status_mismatch"], cb["status_mismatch_examples"]) == (1, ["d"])
    assert cb["final_statuses"] == {"delivered": 2, "undelivered": 1}
    assert (cb["all_final_after_s"], cb["end_to_end_per_s"]) == (3.0, 1.0)
    assert cb["gateway_cpu_us_per_event"] == 100_000.0
    assert (cb["peak_callbacks_per_s"], cb["peak_events_per_s"]) == (2, 4)
    assert cb["latency"]["all"]["count"] == 3
