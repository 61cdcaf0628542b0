"""The load tests' webhook receiver, a real `python -m loadtest.receiver` process
on a port picked at run time, driven by a real HTTP client (httpx) and by hand
over a raw socket where the wire itself is the point."""

from __future__ import annotations

import hashlib
import hmac
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from loadtest.harness import ReceiverProcess

SECRET = "s3cret"
TS = "1731283200"


def signed(body: Any, *, form: str = "timestamped", secret: str = SECRET) -> dict[str, Any]:
    raw = orjson.dumps(body)
    signed_over = raw if form == "raw" else TS.encode() + b"." + raw
    mac = hmac.new(secret.encode(), signed_over, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Smsgw-Signature": f"sha256={mac}",
               "X-Smsgw-Timestamp": TS}
    return {"content": raw, "headers": headers}


def event(mid: str, status: str, event_id: str) -> dict[str, str]:
    return {"event_id": event_id, "id": mid, "status": status}


@pytest.fixture
def receiver_factory(tmp_path: Path) -> Iterator:
    started: list[ReceiverProcess] = []

    def make(*args: str) -> ReceiverProcess:
        rcv = ReceiverProcess(tmp_path, secret=SECRET, args=list(args))
        started.append(rcv)
        rcv.start()
        return rcv

    yield make
    for rcv in started:
        rcv.stop()


def test_single_and_batched_callbacks_are_counted_per_message(receiver_factory) -> None:
    rcv = receiver_factory("--signature", "either")
    rcv.messages()  # fresh totals: the harness's readiness probe was a connection too
    connections_before = rcv.stats()["connections"]
    with httpx.Client(timeout=10) as client:
        posts = [
            event("m1", "submitted", "e1"),
            event("m1", "delivered", "e2"),
            # a batch: m1's final again (a redelivery of e2), two new finals
            {"results": [event("m1", "delivered", "e2"), event("m2", "undelivered", "e3"),
                         event("m3", "canceled", "e4")]},
            event("m3", "failed", "e5"),  # a second, different final for m3
        ]
        for body in posts:
            assert client.post(rcv.url, **signed(body)).status_code == 200
        # the body-only form of today's sender is good in `either` mode
        assert client.post(rcv.url, **signed(event("m4", "delivered", "e6"),
                                             form="raw")).status_code == 200
        # a wrong key: counted as bad, still answered 200 (and counted as received)
        assert client.post(rcv.url, **signed(event("m5", "expired", "e7"),
                                             secret="wrong")).status_code == 200
    table = rcv.messages()
    s = rcv.stats()
    assert (s["requests"], s["events"], s["final_events"]) == (6, 8, 7)
    assert s["finals"] == 5  # m1..m5, each once
    assert (s["duplicated_finals"], s["redelivered_finals"], s["second_finals"]) == (2, 1, 1)
    assert s["bad_signatures"] == 1
    assert s["signatures"] == {"timestamped": 4, "raw": 1}
    assert s["batch_sizes"] == {"1": 5, "3": 1}
    # one keep-alive connection for all six requests
    assert s["connections"] - connections_before == 1
    assert {mid: (count, seen) for mid, (_at, count, seen) in table.items()} == {
        "m1": (2, ["submitted", "delivered"]),
        "m2": (1, ["undelivered"]),
        "m3": (2, ["failed", "canceled"]),
        "m4": (1, ["delivered"]),
        "m5": (1, ["expired"]),
    }
    assert all(isinstance(at, float) for at, _count, _seen in table.values())
    # the first final's arrival is kept, not the duplicate's
    assert table["m1"][0] <= table["m3"][0]


def test_a_non_final_status_leaves_a_message_without_a_final(receiver_factory) -> None:
    rcv = receiver_factory()
    with httpx.Client(timeout=10) as client:
        for status in ("accepted", "queued", "submitted"):
            client.post(rcv.url, **signed(event("m1", status, status)))
    assert rcv.messages() == {"m1": [None, 0, ["accepted", "queued", "submitted"]]}
    s = rcv.stats()
    assert (s["events"], s["final_events"], s["finals"], s["bad_signatures"]) == (3, 0, 0, 0)


def test_timestamped_mode_answers_401_to_a_body_only_signature(receiver_factory) -> None:
    rcv = receiver_factory("--signature", "timestamped", "--bad-signature-status", "401")
    with httpx.Client(timeout=10) as client:
        bad = client.post(rcv.url, **signed(event("m1", "delivered", "e1"), form="raw"))
        unsigned = client.post(rcv.url, content=orjson.dumps(event("m2", "delivered", "e2")))
        good = client.post(rcv.url, **signed(event("m3", "delivered", "e3")))
    assert (bad.status_code, unsigned.status_code, good.status_code) == (401, 401, 200)
    assert rcv.messages() == {"m3": [pytest.approx(rcv.messages()["m3"][0]), 1, ["delivered"]]}
    s = rcv.stats()
    # refused bodies are not received: the sender is expected to send them again
    assert (s["requests"], s["events"], s["finals"], s["bad_signatures"]) == (3, 1, 1, 2)
    assert s["signatures"] == {"timestamped": 1, "missing": 1}


def test_pipelined_requests_get_answers_in_order_on_one_connection(receiver_factory) -> None:
    rcv = receiver_factory("--signature", "off")
    bodies = [orjson.dumps(event(f"m{k}", "delivered", f"e{k}")) for k in range(3)]
    wire = b"".join(
        b"POST /callbacks HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b)
        for b in bodies)
    # a last request that asks to close: answered, then the connection ends
    wire += (b"POST /callbacks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
             b"Content-Length: %d\r\n\r\n%s" % (len(bodies[0]), bodies[0]))
    with socket.create_connection(("127.0.0.1", rcv.port), timeout=10) as sock:
        sock.sendall(wire)
        got = b""
        for _ in range(100):  # until the receiver closes, bounded
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    assert got.count(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n") == 4
    assert got.endswith(b"Connection: close\r\n\r\n")
    rcv.messages()
    s = rcv.stats()
    assert (s["requests"], s["finals"], s["duplicated_finals"]) == (4, 3, 1)


def test_a_malformed_request_gets_400_and_the_connection_closes(receiver_factory) -> None:
    rcv = receiver_factory()
    with socket.create_connection(("127.0.0.1", rcv.port), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        got = b""
        for _ in range(100):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    with httpx.Client(timeout=10) as client:  # and the receiver still serves others
        assert client.post(rcv.url, **signed(event("m1", "delivered", "e1"))).status_code == 200
    rcv.messages()
    assert rcv.stats()["finals"] == 1
