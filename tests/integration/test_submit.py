"""`POST /v1/messages` as served in front of FastAPI (gateway.ingress.http.submit), against a
real gateway process with its embedded redis-server: the answers are the ones
the FastAPI route gave (captured from it before the change, status, code and
field paths), every body field reaches the stored message, concurrent requests
share script calls, and a flush that fails answers 503 to each of its requests
with nothing written."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import pytest
import redis

from gateway.store import scripts
from gateway.store.keys import depth_key, msg_key, msg_prefix
from loadtest.harness import GatewayProcess
from loadtest.loadgen import redis_url_of
from tests.integration.conftest import AUTH

GOOD = {"to": "+8613800138000", "from": "SHOP", "text": "Your order shipped"}
BODY_LIMIT = 100_000
JSON = {"content-type": "application/json"}
ENQUEUE_SHA = hashlib.sha1(scripts.load("enqueue_chunk").encode()).hexdigest()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        tmp_path_factory.mktemp("submit"),
        env={
            "SMSGW_ACCOUNTS__OTHER__API_KEYS": '["other-key"]',
            "SMSGW_ACCOUNTS__OTHER__DEFAULT_REGION": "GB",
            "SMSGW_HTTP__MAX_BODY_BYTES": str(BODY_LIMIT),
            # these tests send many wrong keys on purpose, all from 127.0.0.1
            "SMSGW_HTTP__AUTH_FAILURES": "1000000",
            # send_at in 2099 below: a horizon of 100 years
            "SMSGW_HTTP__SEND_AT_HORIZON": str(100 * 365 * 86400),
        },
    )
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def api(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=30) as c:
        yield c


@pytest.fixture
def r(gw: GatewayProcess) -> Iterator[redis.Redis]:
    assert gw.process is not None
    url = redis_url_of(gw.process.pid)
    assert url is not None
    client = redis.Redis.from_url(url)
    try:
        yield client
    finally:
        client.close()


def problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["code"] == code and body["status"] == status
    assert body["type"] == f"https://smsgw.dev/problems/{code}"
    return dict(body)


def fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body.get("errors", [])]


# --- answers -----------------------------------------------------------------


def test_a_good_message_is_202_with_id_parts_and_encoding(api: httpx.Client) -> None:
    r = api.post("/v1/messages", json=GOOD)
    assert r.status_code == 202
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"id", "status", "parts", "encoding"}
    assert (body["status"], body["parts"], body["encoding"]) == ("accepted", 1, "gsm7")
    r = api.post("/v1/messages", json={**GOOD, "text": "你好" * 50})
    assert (r.json()["parts"], r.json()["encoding"]) == (2, "ucs2")


@pytest.mark.parametrize(
    ("body", "code", "expected_fields"),
    [
        ({**GOOD, "class": "spam"}, "validation_error", ["class"]),
        ({**GOOD, "to": 5}, "validation_error", ["to"]),
        ({**GOOD, "surprise": 1}, "validation_error", ["surprise"]),
        ({**GOOD, "validity": 0}, "validation_error", ["validity"]),
        ({**GOOD, "callback_events": ["nope"]}, "validation_error", ["callback_events.0"]),
        ({"from": "S", "text": "x"}, "validation_error", ["to"]),
        ({}, "validation_error", ["to", "from", "text"]),
        ([1], "validation_error", [""]),
        ({**GOOD, "to": "12345"}, "invalid_number", ["to"]),
        ({**GOOD, "text": "x" * 1531}, "too_long", ["text"]),
        ({**GOOD, "validity": 10**9}, "invalid_validity", ["validity"]),
        ({**GOOD, "validity": 123456789012345678901234567890}, "invalid_validity", ["validity"]),
        ({**GOOD, "text": "你好", "encoding": "gsm7"}, "unencodable", ["text"]),
    ],
)
def test_invalid_bodies_are_422_with_the_codes_and_field_paths_of_before(
    api: httpx.Client, body: Any, code: str, expected_fields: list[str]
) -> None:
    p = problem(api.post("/v1/messages", json=body), 422, code)
    assert fields(p) == expected_fields


def test_bodies_that_are_not_json_objects_get_the_answers_of_before(api: httpx.Client) -> None:
    post = api.post
    problem(post("/v1/messages", content=b"{", headers=JSON), 400, "malformed_json")
    problem(post("/v1/messages", content=b"   ", headers=JSON), 400, "malformed_json")
    problem(post("/v1/messages", content=json.dumps(GOOD).encode() + b" x", headers=JSON),
            400, "malformed_json")
    # the key is looked at before the body is read, so malformed JSON without one is a 401
    problem(httpx.post(f"{api.base_url}/v1/messages", content=b"{", headers=JSON),
            401, "unauthorized")
    p = problem(post("/v1/messages", content=b"", headers=JSON), 422, "validation_error")
    assert p["errors"] == [{"field": "", "message": "Field required"}]
    # a JSON body sent as something else is refused: 415
    for ctype in (None, "text/plain", "application/x-www-form-urlencoded"):
        headers = {"content-type": ctype} if ctype else {}
        r = post("/v1/messages", content=json.dumps(GOOD).encode(), headers=headers)
        problem(r, 415, "unsupported_media_type")
    for ctype in ("application/json; charset=utf-8", "APPLICATION/JSON",
                  "application/vnd.smsgw+json"):
        r = post("/v1/messages", content=json.dumps(GOOD).encode(), headers={"content-type": ctype})
        assert r.status_code == 202, (ctype, r.text)
    problem(post("/v1/messages", content=b'{"to": "\xff"}', headers=JSON), 400, "malformed_json")
    # what the standard library's json accepts still is: NaN (then refused by the model),
    # a byte-order mark
    p = problem(post("/v1/messages", content=b'{"to":"+8613800138000","from":"S","text":"x",'
                     b'"validity":NaN}', headers=JSON), 422, "validation_error")
    assert fields(p) == ["validity"]
    r = post("/v1/messages", content=b"\xef\xbb\xbf" + json.dumps(GOOD).encode(), headers=JSON)
    assert r.status_code == 202


def test_the_api_key_is_read_as_before(gw: GatewayProcess) -> None:
    url = f"{gw.base_url}/v1/messages"
    for auth, detail in (
        (None, "send Authorization: Bearer <api key>"),
        ("Basic ZGVtbw==", "send Authorization: Bearer <api key>"),
        ("Bearer", "send Authorization: Bearer <api key>"),
        ("Bearer nope", "unknown API key"),
    ):
        headers = {"authorization": auth} if auth else {}
        r = httpx.post(url, json=GOOD, headers=headers)
        assert problem(r, 401, "unauthorized")["detail"] == detail
        assert r.headers["www-authenticate"] == "Bearer"
    # the key is looked at before the body is validated
    problem(httpx.post(url, json=[1]), 401, "unauthorized")
    for auth in ("bearer demo-key", "BEARER demo-key", "Bearer  demo-key"):
        assert httpx.post(url, json=GOOD, headers={"authorization": auth}).status_code == 202


def test_the_idempotency_key_header_is_validated_with_the_body(api: httpx.Client) -> None:
    p = problem(api.post("/v1/messages", json={**GOOD, "class": "x"},
                         headers={"Idempotency-Key": "k" * 256}), 422, "validation_error")
    assert fields(p) == ["header.Idempotency-Key", "class"]
    p = problem(api.post("/v1/messages", json=GOOD, headers={"Idempotency-Key": ""}),
                422, "validation_error")
    assert fields(p) == ["header.Idempotency-Key"]
    headers = {"Idempotency-Key": "submit-1"}
    first = api.post("/v1/messages", json=GOOD, headers=headers)
    again = api.post("/v1/messages", json=GOOD, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    problem(api.post("/v1/messages", json={**GOOD, "text": "other"}, headers=headers),
            422, "idempotency_mismatch")


def test_bodies_over_the_limit_are_413_whether_announced_or_streamed(api: httpx.Client) -> None:
    big = b'{"to": "' + b"1" * (BODY_LIMIT + 10) + b'"}'
    problem(api.post("/v1/messages", content=big, headers=JSON), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 10_000

    problem(api.post("/v1/messages", content=chunks(), headers=JSON), 413, "payload_too_large")


def test_other_methods_and_a_trailing_slash_get_what_the_router_answered(
    api: httpx.Client,
) -> None:
    r = api.get("/v1/messages")
    assert problem(r, 405, "method_not_allowed") and r.headers["allow"] == "POST"
    r = api.post("/v1/messages/", json=GOOD)
    assert r.status_code == 307 and r.headers["location"].endswith("/v1/messages")


def test_marketing_to_an_opted_out_number_is_422_with_and_without_a_key(
    api: httpx.Client,
) -> None:
    assert api.post("/v1/optouts", json={"number": "+8613900139011"}).status_code == 201
    mkt = {**GOOD, "to": "+8613900139011", "class": "marketing"}
    for headers in ({}, {"Idempotency-Key": "optout-1"}):
        p = problem(api.post("/v1/messages", json=mkt, headers=headers), 422, "opted_out")
        assert fields(p) == ["to"] and "8613900139011" not in p["detail"]
    assert api.post("/v1/messages", json={**mkt, "class": "otp"}).status_code == 202


def test_every_body_field_reaches_the_stored_message(api: httpx.Client, r: redis.Redis) -> None:
    r_ = api.post("/v1/messages", json={
        **GOOD, "class": "otp", "callback_url": "http://127.0.0.1:9/cb",
        "callback_events": ["accepted", "delivered"], "client_ref": "order-17",
        "send_at": "2099-01-01T00:00:00Z", "validity": 3600, "encoding": "ucs2",
    })
    assert r_.status_code == 202, r_.text
    message_id = r_.json()["id"]
    stored = r.hgetall(msg_key(message_id))
    record = msgpack.unpackb(stored[b"r"], raw=False)
    (mid, account, to, sender, text, msg_class, encoding, parts, _created, expires, connectors,
     carrier, callback_url, client_ref, batch_id, send_at, _extra, webhook) = record
    assert (mid, account, to, sender, text) == (
        message_id, "demo", "+8613800138000", "SHOP", "Your order shipped")
    assert (msg_class, encoding, parts, connectors, carrier) == (
        "otp", "ucs2", 1, ["sim"], "China Mobile")
    assert (callback_url, client_ref, batch_id) == ("http://127.0.0.1:9/cb", "order-17", None)
    assert send_at == 4070908800.0 and expires == send_at + 3600
    assert stored[b"s"] == b"scheduled"
    # the callback spec: accepted (bit 0) and delivered (bit 4)
    assert webhook.split()[0] == "17" and stored[b"w"] == webhook.encode()


# --- persistence -----------------------------------------------------------------


def _requests_at_once(port: int, bodies: list[bytes], headers: str = "") -> list[tuple[int, bytes]]:
    """Open one connection per body, then send every request back to back and
    read every answer: requests a worker has in flight together."""

    async def run() -> list[tuple[int, bytes]]:
        streams = [await asyncio.open_connection("127.0.0.1", port) for _ in bodies]
        for (_, writer), body in zip(streams, bodies, strict=True):
            writer.write(
                f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer demo-key\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"{headers}\r\n".encode() + body
            )
        out = []
        for reader, writer in streams:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            out.append((int(head[9:12]), await asyncio.wait_for(reader.readexactly(length), 30)))
            writer.close()
        return out

    return asyncio.run(run())


def _enqueue_calls(r: redis.Redis) -> int:
    return sum(1 for e in r.slowlog_get(100_000)
               if e["command"].startswith(f"EVALSHA {ENQUEUE_SHA}".encode()))


def _message_keys(r: redis.Redis) -> int:
    return sum(1 for _ in r.scan_iter(msg_prefix(0) + "*", count=1000))


def test_concurrent_single_messages_share_enqueue_script_calls(
    gw: GatewayProcess, r: redis.Redis
) -> None:
    n = 48
    bodies = [json.dumps({**GOOD, "to": f"+86138001{i:05d}", "client_ref": str(i)}).encode()
              for i in range(n)]
    r.config_set("slowlog-max-len", 100_000)
    r.config_set("slowlog-log-slower-than", 0)  # log every command
    r.slowlog_reset()
    try:
        answers = _requests_at_once(gw.http_port, bodies)
        calls = _enqueue_calls(r)
    finally:
        r.config_set("slowlog-log-slower-than", 10_000)
        r.config_set("slowlog-max-len", 128)
    assert [status for status, _ in answers] == [202] * n
    assert 1 <= calls < n, calls
    ids = [json.loads(body)["id"] for _, body in answers]
    for i, message_id in enumerate(ids):  # each persisted, as its own message
        record = msgpack.unpackb(r.hget(msg_key(message_id), "r"), raw=False)
        assert record[2] == f"+86138001{i:05d}" and record[13] == str(i)


def test_a_failed_flush_answers_503_to_each_request_and_writes_nothing(
    gw: GatewayProcess, api: httpx.Client, r: redis.Redis
) -> None:
    n = 16
    bodies = [json.dumps({**GOOD, "to": f"+86138002{i:05d}"}).encode() for i in range(n)]
    keys_before = _message_keys(r)
    depth_before = r.hgetall(depth_key(0))
    # Redis over its memory limit refuses the script's first write: the flush fails whole.
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", 1)
    try:
        answers = _requests_at_once(gw.http_port, bodies)
    finally:
        r.config_set("maxmemory", 0)
    assert [status for status, _ in answers] == [503] * n
    for _, body in answers:
        assert json.loads(body)["code"] == "store_unavailable"
    assert _message_keys(r) == keys_before
    assert r.hgetall(depth_key(0)) == depth_before
    # the next flush works again
    assert api.post("/v1/messages", json=GOOD).status_code == 202
