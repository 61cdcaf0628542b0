"""Input validated up front, the same way on `/v1/messages` and
`/v1/messages/batch`, against a real gateway: the sender, `send_at`, numbers
with control or invisible characters or extensions, malformed bodies and
content types."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtest.harness import GatewayProcess
from tests.integration.conftest import AUTH

GOOD_TO = "+8613800138000"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    gw = GatewayProcess(Path(tmp_path_factory.mktemp("inputs")),
                        env={"SMSGW_HTTP__AUTH_FAILURES": "1000000"})
    gw.start()
    try:
        with httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as client:
            yield client
    finally:
        gw.stop()


def send(api: httpx.Client, endpoint: str, to: str = GOOD_TO, **fields: Any) -> httpx.Response:
    """One message on either endpoint: the same fields, as each takes them."""
    base = {"from": "SHOP", "text": "hello", **fields}
    if endpoint == "single":
        return api.post("/v1/messages", json={"to": to, **base})
    return api.post("/v1/messages/batch", json={**base, "messages": [{"to": to}]})


def refused(r: httpx.Response, endpoint: str, status: int, code: str) -> None:
    """The request refused with `code`: the whole request, or (a batch's
    per-recipient check) its one recipient listed under `rejected`."""
    if endpoint == "batch" and r.status_code == 202:
        body = r.json()
        assert body["accepted"] == [], body
        assert [x["code"] for x in body["rejected"]] == [code], body
        return
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code, r.text


BOTH = pytest.mark.parametrize("endpoint", ["single", "batch"])


@BOTH
@pytest.mark.parametrize("sender", [
    "SH\u0000OP", "商店", "SHOP\n", "SH\u200bOP", "A" * 12, "1" * 16, "+1234567890123456",
])
def test_a_sender_no_smsc_can_send_from_is_invalid_sender(
    api: httpx.Client, endpoint: str, sender: str
) -> None:
    r = send(api, endpoint, **{"from": sender})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_sender"
    assert r.json()["errors"][0]["field"] == "from"


@BOTH
@pytest.mark.parametrize("sender", ["SHOP", "A" * 11, "1" * 15, "+8613800138000", "Café 1"])
def test_senders_an_smsc_can_send_from_are_accepted(
    api: httpx.Client, endpoint: str, sender: str
) -> None:
    assert send(api, endpoint, **{"from": sender}).status_code == 202


@BOTH
@pytest.mark.parametrize("send_at", [
    "2030-01-01T00:00:00", "2030-01-01", "1700000000", 1700000000, "9999-12-31T23:59:59Z",
    "2030-02-30T00:00:00Z", "next tuesday",
])
def test_a_send_at_without_offset_or_beyond_the_horizon_is_invalid_send_at(
    api: httpx.Client, endpoint: str, send_at: Any
) -> None:
    r = send(api, endpoint, send_at=send_at)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_send_at", r.text


@BOTH
@pytest.mark.parametrize("form", ["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.5+08:00"])
def test_an_rfc_3339_send_at_with_an_offset_is_scheduled(
    api: httpx.Client, endpoint: str, form: str
) -> None:
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).strftime(form)
    r = send(api, endpoint, send_at=at)
    assert r.status_code == 202, r.text
    first = r.json()["id"] if endpoint == "single" else r.json()["accepted"][0]["id"]
    assert api.get(f"/v1/messages/{first}").json()["status"] == "scheduled"


@BOTH
@pytest.mark.parametrize("to", [
    GOOD_TO + "\n", "+86138\u000000138000", "+86138\u200b00138000", GOOD_TO + ";ext=1",
    GOOD_TO + " ext. 12", GOOD_TO + "#1",
])
def test_numbers_with_control_characters_or_extensions_are_invalid_number(
    api: httpx.Client, endpoint: str, to: str
) -> None:
    refused(send(api, endpoint, to=to), endpoint, 422, "invalid_number")


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/batch", "/v1/optouts"])
@pytest.mark.parametrize("body", [
    b'{"to": "\xff\xfe"}', b"[" * 100_000 + b"]" * 100_000, b'{"to": ' + b"9" * 5000 + b"}",
    b"{", b'{"a": 1} x',
])
def test_every_malformed_body_is_malformed_json(api: httpx.Client, path: str, body: bytes) -> None:
    r = api.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "malformed_json"
    assert set(problem) == {"type", "title", "status", "code", "detail"}


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/batch", "/v1/optouts"])
@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_is_415(api: httpx.Client, path: str, ctype: str | None) -> None:
    body = json.dumps({"to": GOOD_TO, "from": "SHOP", "text": "hi", "number": GOOD_TO}).encode()
    headers = {"content-type": ctype} if ctype else {}
    r = api.post(path, content=body, headers=headers)
    assert r.status_code == 415, r.text
    assert r.json()["code"] == "unsupported_media_type"
