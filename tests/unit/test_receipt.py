"""Delivery receipts: every SMSC writes Appendix B a little differently, and a
receipt we fail to read is a message that never becomes ``delivered``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.receipt import (
    MESSAGE_STATE_TO_STAT,
    STAT_TO_MESSAGE_STATE,
    Receipt,
    _parse_by_keys,
    format_receipt,
    merge_receipt_tlvs,
    message_state_for,
    normalize_message_id,
    parse_receipt,
)

APPENDIX_B = (
    "id:0123456789 sub:001 dlvrd:001 submit date:0610191018 "
    "done date:0610191020 stat:DELIVRD err:000 Text:Hello world"
)


def test_appendix_b_example() -> None:
    assert parse_receipt(APPENDIX_B) == Receipt(
        id="0123456789",
        sub=1,
        dlvrd=1,
        submit_date=datetime(2006, 10, 19, 10, 18),
        done_date=datetime(2006, 10, 19, 10, 20),
        stat="DELIVRD",
        err="000",
        text="Hello world",
    )


def test_bytes_input() -> None:
    r = parse_receipt(APPENDIX_B.encode())
    assert r is not None and r.id == "0123456789"
    r = parse_receipt(APPENDIX_B.encode()[:-11] + b"caf\xe9")  # not UTF-8: Latin-1
    assert r is not None and r.text == "café"


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        # upper-case keys, underscores, 12-digit dates, 32-hex id, empty text (Clickatell)
        (
            "ID:a29f6845555647139e5c8f3b817f2c9a SUB:001 DLVRD:001 SUBMIT_DATE:141023215253 "
            "DONE_DATE:141023215259 STAT:delivrd ERR:000 TEXT:",
            {
                "id": "a29f6845555647139e5c8f3b817f2c9a",
                "submit_date": datetime(2014, 10, 23, 21, 52, 53),
                "done_date": datetime(2014, 10, 23, 21, 52, 59),
                "stat": "DELIVRD",
                "text": "",
            },
        ),
        # sub and dlvrd missing (seen with jsmpp users)
        (
            "id:1526758174 submit date:1701240904 done date:1701240904 stat:DELIVRD "
            "err:000 text:hellow",
            {"id": "1526758174", "sub": None, "dlvrd": None, "text": "hellow"},
        ),
        # short counters, one-digit err, text after a space (gosmpp issue)
        (
            "id:123A456B sub:1 dlvrd:1 submit date:1702281424 done date:1702281424 "
            "stat:DELIVRD err:0 text: hello how are you there",
            {"id": "123A456B", "sub": 1, "err": "0", "text": "hello how are you there"},
        ),
        # no text at all, no err, fields in another order, extra whitespace
        (
            "  stat:UNDELIV   id:  77   done date:2301011200  ",
            {"id": "77", "stat": "UNDELIV", "err": None, "text": "", "submit_date": None},
        ),
        # a Text: with colons, and key-like words inside it
        (
            "id:9 stat:EXPIRED err:001 Text:Your code: 1234. id:fake stat:DELIVRD",
            {"id": "9", "stat": "EXPIRED", "text": "Your code: 1234. id:fake stat:DELIVRD"},
        ),
        # spelled-out states
        ("id:5 stat:Delivered", {"stat": "DELIVRD"}),
        ("id:5 stat:REJECTED err:0x0B", {"stat": "REJECTD", "err": "0x0B"}),
        # an invalid date is dropped, the receipt is kept
        ("id:5 submit date:0613991018 stat:ACCEPTD", {"submit_date": None, "stat": "ACCEPTD"}),
        # 14-digit dates
        (
            "id:5 done date:20240229235959 stat:DELIVRD",
            {"done_date": datetime(2024, 2, 29, 23, 59, 59)},
        ),
        # err with 4 digits and a GSM escape in the text (php-smpp issue)
        ("id:117 sub:001 dlvrd:001 stat:DELIVRD err:0000 text:H\x1bello", {"err": "0000"}),
    ],
)
def test_real_world_variants(text: str, expect: dict[str, object]) -> None:
    r = parse_receipt(text)
    assert r is not None
    for field, value in expect.items():
        assert getattr(r, field) == value, field


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Hello, how are you?",
        "id:12345 sub:001 dlvrd:001",  # no stat
        "stat:DELIVRD err:000",  # no id
        "paid:12 status:ok",  # keys must be whole words
    ],
)
def test_not_a_receipt(text: str) -> None:
    assert parse_receipt(text) is None


def test_format_is_appendix_b() -> None:
    r = parse_receipt(APPENDIX_B)
    assert r is not None
    assert format_receipt(r) == APPENDIX_B
    r.text = "x" * 30
    assert format_receipt(r).endswith("Text:" + "x" * 20)


def test_format_missing_fields() -> None:
    r = Receipt("abc", None, None, None, None, "ENROUTE", None, "")
    s = format_receipt(r)
    assert s == (
        "id:abc sub:000 dlvrd:000 submit date:0000000000 done date:0000000000 "
        "stat:ENROUTE err:000 Text:"
    )
    back = parse_receipt(s)
    assert back is not None and back.submit_date is None and back.stat == "ENROUTE"


def test_format_with_seconds() -> None:
    r = Receipt("1", 1, 1, datetime(2024, 1, 2, 3, 4, 5), None, "DELIVRD", "000", "")
    assert "submit date:240102030405 " in format_receipt(r, seconds=True)


_DT = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0)
)


@given(
    id=st.text("0123456789abcdefABCDEF-", min_size=1, max_size=64),
    sub=st.integers(0, 999),
    dlvrd=st.integers(0, 999),
    submit=_DT,
    done=_DT,
    stat=st.sampled_from(sorted(STAT_TO_MESSAGE_STATE)),
    err=st.from_regex(r"[0-9]{1,4}", fullmatch=True),
    text=st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")), max_size=20),
)
def test_format_parse_round_trip(
    id: str,
    sub: int,
    dlvrd: int,
    submit: datetime,
    done: datetime,
    stat: str,
    err: str,
    text: str,
) -> None:
    r = Receipt(id, sub, dlvrd, submit, done, stat, err, text)
    assert parse_receipt(format_receipt(r)) == r


def test_message_states() -> None:
    assert STAT_TO_MESSAGE_STATE == {
        "ENROUTE": 1,
        "DELIVRD": 2,
        "EXPIRED": 3,
        "DELETED": 4,
        "UNDELIV": 5,
        "ACCEPTD": 6,
        "UNKNOWN": 7,
        "REJECTD": 8,
    }
    assert MESSAGE_STATE_TO_STAT[2] == "DELIVRD"
    assert message_state_for("delivrd") == 2
    assert message_state_for("FAILED") == 7


def test_merge_tlvs() -> None:
    r = parse_receipt("id:0A stat:DELIVRD")
    merged = merge_receipt_tlvs(r, "10", 5, b"\x03\x00\x0b")
    assert merged is not None
    assert (merged.id, merged.stat, merged.err) == ("10", "UNDELIV", "11")
    only_tlvs = merge_receipt_tlvs(None, "abc", 2)
    assert only_tlvs is not None and only_tlvs.stat == "DELIVRD" and only_tlvs.id == "abc"
    assert merge_receipt_tlvs(None, None, 2) is None


@pytest.mark.parametrize(
    ("smsc_id", "mode", "expected"),
    [
        ("0A", "hex", "10"),
        ("0x0a", "hex", "10"),
        ("6C7C7DE28BB3E961", "hex", str(0x6C7C7DE28BB3E961)),
        ("000123", "dec", "123"),
        ("0000", "dec", "0"),
        (" 00AbC12 ", "auto", "abc12"),
        ("00ABC12", "str", "abc12"),
        ("abc\x00", "auto", "abc"),
        ("not-hex", "hex", "not-hex"),  # falls back, never raises
        ("12a", "dec", "12a"),
        ("", "auto", ""),
    ],
)
def test_normalize_message_id(smsc_id: str, mode: str, expected: str) -> None:
    assert normalize_message_id(smsc_id, mode) == expected


def test_hex_submit_resp_matches_decimal_receipt() -> None:
    # submit_sm_resp said "0A1B2C", the receipt says id:0662316
    assert normalize_message_id("0A1B2C", "hex") == normalize_message_id("0662316", "dec")


_KEY_CASE = st.sampled_from([str.lower, str.upper, str.title])


@given(
    id=st.text("0123456789abcdefABCDEF", min_size=1, max_size=40),
    sub=st.from_regex(r"[0-9]{1,3}", fullmatch=True),
    submit=st.from_regex(r"[0-9]{10}|[0-9]{12}", fullmatch=True),
    stat=st.sampled_from([*sorted(STAT_TO_MESSAGE_STATE), "delivered", "Rejected"]),
    err=st.from_regex(r"[0-9]{1,4}", fullmatch=True),
    text=st.text(max_size=30),
    case=_KEY_CASE,
    sep=st.sampled_from([" ", "  ", "\t", " \r\n "]),
    date_key=st.sampled_from(["submit date", "submit_date"]),
)
def test_fast_path_agrees_with_the_key_scan(
    id: str,
    sub: str,
    submit: str,
    stat: str,
    err: str,
    text: str,
    case: Any,
    sep: str,
    date_key: str,
) -> None:
    # The common layout takes one anchored regex; the general key scan must
    # read it the same way, so which path runs never changes a receipt.
    keys = [case(k) for k in ("id", "sub", "dlvrd", date_key, "done date", "stat", "err", "text")]
    s = (
        sep.join(
            f"{k}:{v}"
            for k, v in zip(keys, (id, sub, sub, submit, submit, stat, err), strict=False)
        )
        + f"{sep}{keys[-1]}:{text}"
    )
    fast = parse_receipt(s)
    slow = _parse_by_keys(s)
    assert fast == slow
    assert (
        fast is not None and fast.id == id and fast.text == (text[1:] if text[:1] == " " else text)
    )
