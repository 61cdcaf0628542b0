"""Batch submissions: one template, up to `http.batch_max_recipients` recipients.

The body is parsed once with orjson and checked here by hand instead of by a
pydantic model per recipient: at 10,000 recipients a model per item costs more
than the whole rest of admission. `api.BatchIn` is still the schema the OpenAPI
document declares, and these checks enforce exactly that schema (extra keys,
types, lengths), so a body the document calls invalid is a 422 with field paths.

Template placeholders are ``{{name}}`` (gateway/core/template.py). A recipient
whose ``vars`` lack one is rejected with ``missing_variable``; the others go ahead.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, get_args

from gateway.admission.admit import Admission, AdmissionError, parse_send_at
from gateway.core.config import AccountSettings, CallbackEvent
from gateway.core.model import CLASSES, Message
from gateway.core.template import Template

ENCODINGS = ("auto", "gsm7", "ucs2")
CALLBACK_EVENTS = get_args(CallbackEvent)
_URL = re.compile(r"^https?://")
_TOP = {
    "from", "text", "class", "callback_url", "callback_events", "send_at", "validity",
    "encoding", "messages",
}
_ITEM = {"to", "vars", "client_ref"}
_NO_VARS: dict[str, Any] = {}


class InvalidBatch(ValueError):
    """The body does not match the schema: a list of {field, message}."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("the request is not valid")
        self.errors = errors


@dataclass(slots=True)
class BatchRequest:
    sender: str
    template: Template
    msg_class: str
    callback_url: str | None
    send_at: float | None
    validity: int | None
    encoding: str
    messages: list[dict[str, Any]]
    callback_events: list[str] | None = None


def _str(errors: list[dict[str, str]], path: str, value: Any, lo: int, hi: int) -> bool:
    if not isinstance(value, str):
        errors.append({"field": path, "message": "Input should be a valid string"})
        return False
    if not lo <= len(value) <= hi:
        errors.append(
            {"field": path, "message": f"String should have {lo} to {hi} characters"}
        )
        return False
    return True


def parse(data: Any, max_recipients: int, send_at_horizon: float = 365 * 86400) -> BatchRequest:
    """Check a parsed JSON body against the BatchIn schema; InvalidBatch lists every
    problem with its field path (``messages.3.to``)."""
    errors: list[dict[str, str]] = []
    if not isinstance(data, dict):
        raise InvalidBatch([{"field": "", "message": "Input should be a valid object"}])
    for extra in sorted(set(data) - _TOP):
        errors.append({"field": extra, "message": "Extra inputs are not permitted"})
    for name in ("from", "text", "messages"):
        if name not in data:
            errors.append({"field": name, "message": "Field required"})
    sender = data.get("from")
    if "from" in data:
        _str(errors, "from", sender, 1, 20)
    text = data.get("text")
    if "text" in data:
        _str(errors, "text", text, 1, 10_000)
    msg_class = data.get("class", "transactional")
    if msg_class not in CLASSES:
        errors.append({"field": "class", "message": f"Input should be one of {CLASSES}"})
    encoding = data.get("encoding", "auto")
    if encoding not in ENCODINGS:
        errors.append({"field": "encoding", "message": f"Input should be one of {ENCODINGS}"})
    callback_url = data.get("callback_url")
    if (
        callback_url is not None
        and _str(errors, "callback_url", callback_url, 1, 2048)
        and not _URL.match(callback_url)
    ):
        errors.append({"field": "callback_url", "message": "must be an http(s) URL"})
    callback_events = data.get("callback_events")
    if callback_events is not None and (
        type(callback_events) is not list
        or any(e not in CALLBACK_EVENTS for e in callback_events)
    ):
        errors.append({"field": "callback_events",
                       "message": f"Input should be a list of {CALLBACK_EVENTS}"})
    validity = data.get("validity")
    if type(validity) is float and validity.is_integer():
        validity = int(validity)
    if validity is not None and (type(validity) is not int or validity < 1):
        errors.append({"field": "validity", "message": "Input should be an integer >= 1"})
    # One parser for every endpoint (gateway.admission.admit): 422 invalid_send_at.
    send_at = parse_send_at(data.get("send_at"), send_at_horizon)
    messages = data.get("messages")
    if "messages" in data:
        if not isinstance(messages, list):
            errors.append({"field": "messages", "message": "Input should be a valid list"})
        elif not messages:
            errors.append({"field": "messages", "message": "List should have at least 1 item"})
        elif len(messages) > max_recipients:
            errors.append({
                "field": "messages",
                "message": f"at most {max_recipients} recipients per batch, got {len(messages)}",
            })
        else:
            _check_items(errors, messages)
    if errors:
        raise InvalidBatch(errors[:100])
    return BatchRequest(
        sender=sender, template=Template(text), msg_class=msg_class,
        callback_url=callback_url, send_at=send_at, validity=validity, encoding=encoding,
        messages=messages, callback_events=callback_events,
    )


def _check_items(errors: list[dict[str, str]], messages: list[Any]) -> None:
    for i, item in enumerate(messages):
        if type(item) is not dict:
            errors.append({"field": f"messages.{i}", "message": "Input should be a valid object"})
            continue
        if len(item) > 3 or not item.keys() <= _ITEM:
            for extra in sorted(set(item) - _ITEM):
                errors.append({
                    "field": f"messages.{i}.{extra}", "message": "Extra inputs are not permitted",
                })
        to = item.get("to")
        if type(to) is not str or not 0 < len(to) <= 32:
            if to is None and "to" not in item:
                errors.append({"field": f"messages.{i}.to", "message": "Field required"})
            else:
                _str(errors, f"messages.{i}.to", to, 1, 32)
        ref = item.get("client_ref")
        if ref is not None and (type(ref) is not str or len(ref) > 64):
            _str(errors, f"messages.{i}.client_ref", ref, 0, 64)
        values = item.get("vars", _NO_VARS)
        if values is not _NO_VARS:
            if type(values) is not dict:
                errors.append(
                    {"field": f"messages.{i}.vars", "message": "Input should be a valid object"}
                )
                continue
            for k, v in values.items():
                if type(v) not in (str, int, float):
                    errors.append({
                        "field": f"messages.{i}.vars.{k}",
                        "message": "Input should be a string or a number",
                    })
        if len(errors) >= 100:
            return


# Recipients admitted between two yields to the event loop: a 10,000-recipient
# batch of new numbers is about a second of CPU, and the dispatcher (OTP lanes
# first) shares the loop; 100 recipients keep each slice near 10 ms.
YIELD_EVERY = 100


async def admit(
    admission: Admission,
    account_name: str,
    account: AccountSettings,
    req: BatchRequest,
    batch_id: str,
) -> tuple[list[Message], list[tuple[int, Message]], list[dict[str, Any]]]:
    """Admit every recipient on its own: (messages, (index, message) pairs, rejections).
    A field the whole batch shares that is wrong (validity) raises AdmissionError."""
    accepted: list[tuple[int, Message]] = []
    rejected: list[dict[str, Any]] = []
    render = req.template.render
    admit_one = admission.admitter(
        account_name, account, sender=req.sender, msg_class=req.msg_class,
        encoding=req.encoding, callback_url=req.callback_url, send_at=req.send_at,
        validity=req.validity, batch_id=batch_id, callback_events=req.callback_events,
    )
    empty: dict[str, Any] = {}
    for index, item in enumerate(req.messages):
        if index and not index % YIELD_EVERY:
            await asyncio.sleep(0)
        to = item["to"]
        try:
            text = render(item.get("vars") or empty)
        except KeyError as exc:
            rejected.append({
                "index": index, "to": to, "code": "missing_variable",
                "detail": f"vars has no {exc.args[0]!r} for the template",
            })
            continue
        try:
            message = admit_one(to, text, item.get("client_ref"))
        except AdmissionError as exc:
            rejected.append({"index": index, "to": to, "code": exc.code, "detail": exc.detail})
            continue
        accepted.append((index, message))
    return [m for _, m in accepted], accepted, rejected
