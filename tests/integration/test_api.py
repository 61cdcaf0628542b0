"""The HTTP API as a client sees it: every endpoint and error code, against a
real gateway process (embedded redis-server, SMSC simulator) on loopback."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from loadtest.harness import GatewayProcess
from tests.integration.conftest import AUTH, wait_final, wait_for

JSON_TYPE = {"content-type": "application/json"}

OTHER = {"Authorization": "Bearer other-key"}
GOOD = {"to": "+8613800138000", "from": "SHOP", "text": "Your order shipped"}
BODY_LIMIT = 1_000_000


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        tmp_path_factory.mktemp("api"),
        env={
            "SMSGW_ACCOUNTS__OTHER__API_KEYS": '["other-key"]',
            "SMSGW_ACCOUNTS__OTHER__DEFAULT_REGION": "GB",
            "SMSGW_HTTP__MAX_BODY_BYTES": str(BODY_LIMIT),
            # these tests send many wrong keys on purpose, all from 127.0.0.1
            "SMSGW_HTTP__AUTH_FAILURES": "1000000",
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


def queued_total(api: httpx.Client) -> float:
    m = re.search(r'^smsgw_messages_total\{status="queued"\} (\S+)$', api.get("/metrics").text,
                  re.M)
    return float(m.group(1)) if m else 0.0


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == code and body["status"] == status
    assert "Traceback" not in r.text
    return dict(body)


# --- single messages ---------------------------------------------------------


def test_a_message_with_every_contract_field_is_accepted_and_reported(api: httpx.Client) -> None:
    r = api.post("/v1/messages", json={
        **GOOD, "class": "transactional", "callback_url": "http://127.0.0.1:9/cb",
        "client_ref": "order-17", "send_at": "2020-01-01T00:00:00Z", "validity": 3600,
        "encoding": "ucs2",
    })
    assert r.status_code == 202, r.text
    assert r.json()["encoding"] == "ucs2" and r.json()["status"] == "accepted"
    body = wait_final(api, r.json()["id"])
    assert body["status"] == "delivered"
    assert body["client_ref"] == "order-17" and body["class"] == "transactional"
    assert body["to"] == "+8613800138000" and body["carrier"] == "China Mobile"


def test_a_retry_with_the_same_idempotency_key_returns_the_first_response_and_queues_nothing(
    api: httpx.Client,
) -> None:
    before = queued_total(api)
    headers = {"Idempotency-Key": "retry-1"}
    first = api.post("/v1/messages", json=GOOD, headers=headers)
    again = api.post("/v1/messages", json=GOOD, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert queued_total(api) - before == 1


def test_concurrent_retries_with_one_idempotency_key_queue_one_message(
    api: httpx.Client, gw: GatewayProcess
) -> None:
    before = queued_total(api)
    results: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=30) as c:
            results.append(c.post("/v1/messages", json=GOOD, headers={"Idempotency-Key": "race"}))

    threads = [threading.Thread(target=post) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.status_code for r in results} == {202}
    assert len({r.json()["id"] for r in results}) == 1
    assert queued_total(api) - before == 1


def test_the_same_idempotency_key_with_another_body_is_idempotency_mismatch(
    api: httpx.Client,
) -> None:
    headers = {"Idempotency-Key": "mismatch-1"}
    assert api.post("/v1/messages", json=GOOD, headers=headers).status_code == 202
    r = api.post("/v1/messages", json={**GOOD, "text": "another"}, headers=headers)
    problem(r, 422, "idempotency_mismatch")
    # keys are per account: the other account may use the same key freely
    r = api.post("/v1/messages", json={**GOOD, "to": "+447911123456"},
                 headers={**OTHER, **headers})
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({**GOOD, "to": "12345"}, "invalid_number", "to"),
        ({**GOOD, "text": "x" * 1531}, "too_long", "text"),
        ({**GOOD, "validity": 10**9}, "invalid_validity", "validity"),
        ({**GOOD, "class": "spam"}, "validation_error", "class"),
        ({**GOOD, "surprise": 1}, "validation_error", "surprise"),
        ({**GOOD, "callback_url": "ftp://x"}, "validation_error", "callback_url"),
        ({**GOOD, "send_at": "yesterday"}, "invalid_send_at", "send_at"),
    ],
)
def test_invalid_messages_get_stable_codes_and_field_paths(
    api: httpx.Client, body: dict[str, Any], code: str, field: str
) -> None:
    p = problem(api.post("/v1/messages", json=body), 422, code)
    assert field in {e["field"] for e in p["errors"]}


def test_malformed_json_unknown_routes_and_methods_are_problems(api: httpx.Client) -> None:
    problem(api.post("/v1/messages", content=b"{", headers={"content-type": "application/json"}),
            400, "malformed_json")
    problem(api.post("/v1/messages/batch", content=b"[1,", headers=JSON_TYPE), 400,
            "malformed_json")
    problem(api.get("/v1/nothing-here"), 404, "not_found")
    problem(api.put("/v1/messages"), 405, "method_not_allowed")
    problem(api.get("/v1/messages/0123456789abcdef0123456789ab"), 404, "not_found")


def test_every_endpoint_needs_a_known_api_key(gw: GatewayProcess) -> None:
    calls = [
        ("POST", "/v1/messages", GOOD), ("POST", "/v1/messages/batch", {}),
        ("GET", "/v1/messages/x", None), ("GET", "/v1/batches/x", None),
        ("GET", "/v1/optouts", None), ("POST", "/v1/optouts", {"number": "1"}),
        ("GET", "/v1/optouts/1", None), ("DELETE", "/v1/optouts/1", None),
    ]
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic ZGVtbw=="}):
        for method, path, body in calls:
            r = httpx.request(method, gw.base_url + path, json=body, headers=headers)
            problem(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"


def test_bodies_over_the_limit_are_413_with_or_without_content_length(
    api: httpx.Client,
) -> None:
    big = b'{"to": "' + b"1" * (BODY_LIMIT + 10) + b'"}'
    problem(api.post("/v1/messages", content=big, headers={"content-type": "application/json"}),
            413, "payload_too_large")

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 100_000

    problem(api.post("/v1/messages/batch", content=chunks(), headers=JSON_TYPE), 413,
            "payload_too_large")


# --- batches -----------------------------------------------------------------


def test_a_batch_with_good_and_bad_recipients_queues_the_good_ones(api: httpx.Client) -> None:
    assert api.post("/v1/optouts", json={"number": "+8613800138099"}).status_code == 201
    r = api.post("/v1/messages/batch", json={
        "from": "SHOP", "text": "Hi {{name}}, {{ pct }}% off today", "class": "marketing",
        "messages": [
            {"to": "+8613800138001", "vars": {"name": "Li", "pct": 20}, "client_ref": "a"},
            {"to": "12345", "vars": {"name": "Bad", "pct": 1}},
            {"to": "+8613800138002", "vars": {"name": "Wang"}},
            {"to": "13800138003", "vars": {"name": "Zhao", "pct": 30.5}},
            {"to": "+8613800138099", "vars": {"name": "Gone", "pct": 5}},
        ],
    })
    assert r.status_code == 202, r.text
    body = r.json()
    assert [(a["index"], a["to"]) for a in body["accepted"]] == [
        (0, "+8613800138001"), (3, "+8613800138003"),
    ]
    assert [(x["index"], x["code"]) for x in body["rejected"]] == [
        (1, "invalid_number"), (2, "missing_variable"), (4, "opted_out"),
    ]
    assert body["rejected"][0]["to"] == "12345"
    for a in body["accepted"]:
        assert wait_final(api, a["id"])["status"] == "delivered"
    one = api.get(f"/v1/messages/{body['accepted'][0]['id']}").json()
    assert one["batch_id"] == body["batch_id"] and one["client_ref"] == "a"
    assert one["class"] == "marketing"

    batch = wait_for(lambda: (b := api.get(f"/v1/batches/{body['batch_id']}").json())
                     and b["counts"].get("delivered") == 2 and b)
    assert batch["total"] == 2 and batch["counts"] == {"delivered": 2}


def test_a_batch_with_idempotency_key_is_queued_once(api: httpx.Client) -> None:
    payload = {"from": "SHOP", "text": "hello",
               "messages": [{"to": f"+86138001380{i:02d}"} for i in range(30)]}
    headers = {"Idempotency-Key": "batch-1"}
    first = api.post("/v1/messages/batch", json=payload, headers=headers)
    again = api.post("/v1/messages/batch", json=payload, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    batch = api.get(f"/v1/batches/{first.json()['batch_id']}").json()
    assert batch["total"] == 30
    payload["text"] = "changed"
    problem(api.post("/v1/messages/batch", json=payload, headers=headers),
            422, "idempotency_mismatch")


def test_a_batch_over_the_recipient_limit_is_refused_whole(api: httpx.Client) -> None:
    payload = {"from": "SHOP", "text": "x",
               "messages": [{"to": "+8613800138000"}] * 10_001}
    p = problem(api.post("/v1/messages/batch", json=payload), 422, "validation_error")
    assert p["errors"][0]["field"] == "messages"


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"text": "x", "messages": [{"to": "1"}]}, {"from"}),
        ({"from": "S", "text": "x", "messages": []}, {"messages"}),
        ({"from": "S", "text": "x", "messages": [{"to": "1"}, {"vars": {}}]}, {"messages.1.to"}),
        ({"from": "S", "text": "x", "messages": [{"to": 5}]}, {"messages.0.to"}),
        ({"from": "S", "text": "x", "messages": [{"to": "1", "vars": {"a": [1]}}]},
         {"messages.0.vars.a"}),
        ({"from": "S", "text": "x", "messages": [{"to": "1", "x": 1}]}, {"messages.0.x"}),
        ({"from": "S", "text": "x", "messages": [{"to": "1", "vars": None}]}, {"messages.0.vars"}),
        ({"from": "S", "text": "x", "class": "spam", "validity": 0, "messages": [{"to": "1"}]},
         {"class", "validity"}),
        ([1, 2], {""}),
    ],
)
def test_a_batch_that_breaks_the_schema_is_a_validation_error_with_paths(
    api: httpx.Client, payload: Any, fields: set[str]
) -> None:
    p = problem(api.post("/v1/messages/batch", json=payload), 422, "validation_error")
    assert {e["field"] for e in p["errors"]} == fields


def test_an_unknown_batch_is_not_found(api: httpx.Client) -> None:
    problem(api.get("/v1/batches/nope"), 404, "not_found")
    problem(api.get("/v1/batches/" + "x" * 100), 404, "not_found")


# --- opt-outs ----------------------------------------------------------------


def test_opt_outs_add_check_list_remove(api: httpx.Client) -> None:
    r = api.post("/v1/optouts", json={"number": "13900139000"})
    assert r.status_code == 201 and r.json() == {"number": "+8613900139000", "opted_out": True}
    assert api.post("/v1/optouts", json={"number": "+8613900139000"}).status_code == 201
    assert api.get("/v1/optouts/+8613900139000").json()["opted_out"] is True
    assert api.get("/v1/optouts/13900139000").status_code == 200

    seen: list[str] = []
    cursor: int | None = 0
    while cursor is not None:
        page = api.get("/v1/optouts", params={"cursor": cursor, "limit": 1}).json()
        seen += page["numbers"]
        cursor = page["next_cursor"]
    assert "+8613900139000" in seen

    mkt = {**GOOD, "to": "+8613900139000", "class": "marketing"}
    p = problem(api.post("/v1/messages", json=mkt), 422, "opted_out")
    assert p["errors"][0]["field"] == "to"
    assert "8613900139000" not in p["detail"]  # masked
    # an opt-out stops marketing only
    assert api.post("/v1/messages", json={**mkt, "class": "otp"}).status_code == 202

    assert api.delete("/v1/optouts/+8613900139000").status_code == 204
    problem(api.get("/v1/optouts/+8613900139000"), 404, "not_found")
    problem(api.delete("/v1/optouts/+8613900139000"), 404, "not_found")
    assert api.post("/v1/messages", json=mkt).status_code == 202

    problem(api.post("/v1/optouts", json={"number": "12"}), 422, "invalid_number")
    problem(api.get("/v1/optouts/12"), 422, "invalid_number")
    problem(api.post("/v1/optouts", json={}), 422, "validation_error")
    problem(api.get("/v1/optouts", params={"limit": 0}), 422, "validation_error")


# --- accounts ----------------------------------------------------------------


def test_an_account_sees_only_its_own_messages_batches_and_opt_outs(
    api: httpx.Client, gw: GatewayProcess
) -> None:
    mine = api.post("/v1/messages", json=GOOD).json()["id"]
    batch = api.post("/v1/messages/batch", json={
        "from": "SHOP", "text": "x", "messages": [{"to": "+8613800138000"}],
    }).json()["batch_id"]
    api.post("/v1/optouts", json={"number": "+8613700137000"})
    with httpx.Client(base_url=gw.base_url, headers=OTHER, timeout=10) as other:
        problem(other.get(f"/v1/messages/{mine}"), 404, "not_found")
        problem(other.get(f"/v1/batches/{batch}"), 404, "not_found")
        problem(other.get("/v1/optouts/+8613700137000"), 404, "not_found")
        problem(other.delete("/v1/optouts/+8613700137000"), 404, "not_found")
        cursor: int | None = 0
        while cursor is not None:
            page = other.get("/v1/optouts", params={"cursor": cursor}).json()
            assert "+8613700137000" not in page["numbers"]
            cursor = page["next_cursor"]
        # its own opt-out list applies to its own marketing only
        other.post("/v1/optouts", json={"number": "+447911123111"})
        r = other.post("/v1/messages", json={**GOOD, "to": "07911123111", "class": "marketing"})
        problem(r, 422, "opted_out")
    assert api.get("/v1/optouts/+8613700137000").status_code == 200
    r = api.post("/v1/messages", json={**GOOD, "to": "+447911123111", "class": "marketing"})
    assert r.status_code == 202


# --- the OpenAPI document ----------------------------------------------------


def test_openapi_declares_auth_problems_and_every_route(api: httpx.Client) -> None:
    doc = api.get("/openapi.json").json()
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
    assert set(ops) == {
        ("POST", "/v1/messages"), ("POST", "/v1/messages/batch"),
        ("GET", "/v1/messages/{message_id}"), ("GET", "/v1/batches/{batch_id}"),
        ("GET", "/v1/optouts"), ("POST", "/v1/optouts"),
        ("GET", "/v1/optouts/{number}"), ("DELETE", "/v1/optouts/{number}"),
    }
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for op in ops.values():
        assert op["security"] == [{"HTTPBearer": []}]
        for status in ("401", "422"):
            assert "application/problem+json" in op["responses"][status]["content"]
    batch_body = ops["POST", "/v1/messages/batch"]["requestBody"]
    assert batch_body["content"]["application/json"]["schema"]["$ref"].endswith("/BatchIn")
    assert doc["components"]["schemas"]["BatchIn"]["properties"]["messages"]["maxItems"] == 10_000
    smsc_ids = doc["components"]["schemas"]["MessageOut"]["properties"]["smsc_message_ids"]
    assert "not normalised" in smsc_ids["description"]  # the SMSC's own ids, as written



def test_a_store_outage_is_503_store_unavailable_not_a_crash(tmp_path_factory: Any) -> None:
    import json

    import redis

    with GatewayProcess(tmp_path_factory.mktemp("outage")) as gw:
        started = next(json.loads(line) for line in gw.log_path.read_text().splitlines()
                       if "embedded_redis_started" in line)
        try:
            redis.Redis.from_url(started["url"]).shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it goes
        r = httpx.post(f"{gw.base_url}/v1/messages", json=GOOD, headers=AUTH, timeout=60)
        p = problem(r, 503, "store_unavailable")
        assert r.headers["retry-after"] == "1"
        assert "Idempotency-Key" in p["detail"]
