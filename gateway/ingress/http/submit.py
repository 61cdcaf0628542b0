"""`POST /v1/messages`: one message per request, answered in front of FastAPI.

FastAPI's dependency solving, middleware stack and response handling cost
about 100-150 µs of CPU per request on this kind of machine, several times the
message's own admission; a client sending one message per request (OTPs, most
transactional traffic) paid that on every message (docs/benchmarks.md, "Callbacks and
single-message requests"). This route runs as a plain ASGI callable before
FastAPI sees the request (gateway.ingress.http.app.Api) and gives the answers FastAPI gave,
in this order:

1. the API key, from the headers alone, before any body is read: 401
   `unauthorized` (and the connection closes);
2. a Content-Length over `http.max_body_bytes`, or a body that grows past it
   while it is read: 413 `payload_too_large`, answered by gateway.ingress.http.protocol
   before the route runs;
3. a body whose Content-Type is not JSON (`application/json`,
   `application/*+json`): 415 `unsupported_media_type`; a JSON body that does
   not parse: 400 `malformed_json`;
4. the `Idempotency-Key` header and the body against `MessageIn`, together:
   422 `validation_error` with every field path;
5. an `Idempotency-Key` seen before: its first response, or 422
   `idempotency_mismatch`;
6. admission (gateway.admission.admit): 422 with the policy's code;
7. persisted, then 202: messages without an `Idempotency-Key` go with every
   other one admitted in the same event-loop turn in one enqueue_chunk.lua
   script call, which also reads the opt-out lists of its marketing messages
   and leaves those on them out (422 `opted_out`); the script's account
   argument only matters for a batch's owner. A keyed request checks its
   opt-out and makes its own call, which claims the key. A flush that fails
   answers each of its requests 503 `store_unavailable`, so a 202 still means
   the message is in Redis (AOF).

The OpenAPI document still describes the route (gateway.ingress.http.app declares it from
`MessageIn`, `MessageAccepted` and `IdemKey` below).
"""

from __future__ import annotations

import asyncio
import email.message
import hashlib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import Header
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.admission.admit import Admission, AdmissionError, Submission, parse_send_at
from gateway.core import logs, metrics, numbers
from gateway.core.coalesce import Coalescer
from gateway.core.config import AccountSettings, CallbackEvent, HttpSettings
from gateway.core.model import Message, MessageClass, new_id
from gateway.core.problems import Problem
from gateway.ingress.http.auth import Keys, account_for, bearer_token
from gateway.ingress.http.problems import error_response, invalid
from gateway.store import Record, Store
from gateway.store.keys import idem_key, idem_shard

log = logs.get("smsgw.api")

PATH = "/v1/messages"


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: str = Field(min_length=1, max_length=32, description="Recipient, E.164 or national")
    sender: str = Field(alias="from", min_length=1, max_length=20)
    text: str = Field(min_length=1, max_length=10_000)
    msg_class: MessageClass = Field(
        default="transactional", alias="class"
    )
    callback_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")
    callback_events: list[CallbackEvent] | None = Field(
        default=None,
        description="Statuses that make a callback; default: the account's (final ones)",
    )
    client_ref: str | None = Field(default=None, max_length=64)
    # Any: every value is judged by admission.parse_send_at (invalid_send_at).
    send_at: Any = Field(
        default=None, json_schema_extra={"anyOf": [{"type": "string", "format": "date-time"},
                                      {"type": "null"}]},
        description="RFC 3339 with an offset, at most http.send_at_horizon ahead",
    )
    validity: int | None = Field(default=None, ge=1)
    encoding: Literal["auto", "gsm7", "ucs2"] = "auto"


class MessageAccepted(BaseModel):
    id: str
    status: str
    parts: int
    encoding: str


IdemKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key", min_length=1, max_length=255,
        description="A retry with the same key within 24 h returns the first response "
        "and queues nothing; the same key with another body is `idempotency_mismatch`.",
    ),
]
# The header's rules as a validator, so its errors read as FastAPI's did.
_IDEM_KEY: TypeAdapter[str | None] = TypeAdapter(IdemKey)
_IDEM_LOC = ("header", "Idempotency-Key")

MISSING = object()  # no body at all: FastAPI's "Field required" at the body's root
_WANTED = frozenset({b"content-type", b"authorization", b"idempotency-key"})
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def json_type(content_type: str) -> bool:
    """FastAPI's test of a JSON body: main type `application`, subtype `json`
    or `…+json`, parameters and case ignored."""
    if content_type == "application/json":
        return True
    parsed = email.message.Message()
    parsed["content-type"] = content_type
    if parsed.get_content_maintype() != "application":
        return False
    subtype = parsed.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def parse_body(body: bytes, content_type: str | None) -> Any:
    """The body as FastAPI handed it to validation: MISSING when empty, 415
    `unsupported_media_type` unless the Content-Type says JSON, otherwise the
    parsed JSON (400 `malformed_json` for anything that is not).
    orjson parses; what it refuses goes to the standard library's json, which
    FastAPI used, so the same bodies are accepted (NaN, a byte-order mark) and
    the rest fail the same way. orjson reads an integer beyond 64 bits as a
    float, so a body with a run of 19 digits or more is read by the standard
    library too."""
    if not body:
        return MISSING
    if not content_type or not json_type(content_type):
        raise Problem(415, "unsupported_media_type",
                      "send the body as Content-Type: application/json")
    if _LONG_DIGITS.search(body) is None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        raise Problem(400, "malformed_json", "the body is not valid JSON") from None
    except Exception:  # bytes that are not UTF-8, nesting too deep, a 5,000-digit number
        raise Problem(400, "malformed_json", "the body is not valid JSON") from None


def validate(data: Any, idempotency_key: str | None) -> tuple[MessageIn | None, list[Any]]:
    """The body as MessageIn, and FastAPI's errors: the header's first, then the body's."""
    errors: list[Any] = []
    if idempotency_key is not None:
        try:
            _IDEM_KEY.validate_python(idempotency_key)
        except ValidationError as exc:
            errors += [{"loc": (*_IDEM_LOC, *e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    if data is MISSING:
        return None, [*errors, {"loc": (), "msg": "Field required"}]
    try:
        body = MessageIn.model_validate(data, from_attributes=True)
    except ValidationError as exc:
        return None, errors + exc.errors(include_url=False)
    return (None if errors else body), errors


def submission(body: MessageIn, send_at_horizon: float = 365 * 86400) -> Submission:
    """Every field of the request body, as admission takes it."""
    return Submission(
        to=body.to,
        sender=body.sender,
        text=body.text,
        msg_class=body.msg_class,
        encoding=body.encoding,
        callback_url=body.callback_url,
        callback_events=body.callback_events,
        client_ref=body.client_ref,
        send_at=parse_send_at(body.send_at, send_at_horizon),
        validity=body.validity,
    )


# --- idempotency, shared with the batch endpoint ------------------------------------


def idempotency(account: str, key: str | None, body: bytes, shards: int
                ) -> tuple[str, str, int] | None:
    """(Redis key, body hash, store shard) for a keyed request, or None without
    a key. The request's messages take the key's shard, so the script that
    claims the key persists them."""
    if key is None:
        return None
    digest = hashlib.sha256(key.encode()).hexdigest()
    shard = idem_shard(account, digest, shards)
    return idem_key(shard, account, digest), hashlib.sha256(body).hexdigest(), shard


def replay(prior: tuple[bytes, bytes], body_hash: str) -> Response:
    if prior[0].decode() != body_hash:
        raise Problem(
            422, "idempotency_mismatch",
            "this Idempotency-Key was used with a different body",
        )
    return Response(
        prior[1], status_code=202, media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


async def persist(
    store: Store,
    api: HttpSettings,
    account: str,
    messages: list[Message],
    response: bytes,
    idem: tuple[str, str, int] | None,
    batch_id: str | None = None,
) -> Response | None:
    """Queue the messages in their own script calls (claiming the idempotency key
    with the first chunk); a Response when an earlier request owns the key."""
    records = [store.record(m) for m in messages]
    size = api.batch_chunk
    chunks = [records[i : i + size] for i in range(0, len(records), size)]
    spec = None
    if idem is not None:
        spec = (idem[0], new_id(), idem[1].encode(), response, api.idempotency_ttl)
    prior = await store.enqueue_api(account, chunks, batch_id=batch_id, idem=spec)
    if prior is not None and idem is not None:
        return replay(prior, idem[1])
    return None


# --- the route ---------------------------------------------------------------------


def _rate_limited(seconds: float) -> Problem:
    wait = max(1, math.ceil(seconds))
    return Problem(429, "rate_limited",
                   f"too many failed API keys from this address; retry in {wait} s",
                   headers={"Retry-After": str(wait), "Connection": "close"})


def _opted_out(message: Message) -> AdmissionError:
    return AdmissionError("opted_out", f"{numbers.mask(message.to)} opted out of marketing", "to")


class Submitter:
    """The ASGI callable for `POST /v1/messages`."""

    def __init__(self, settings_http: HttpSettings, store: Store, admission: Admission,
                 keys: Keys) -> None:
        self.api, self.store, self.admission, self.keys = settings_http, store, admission, keys
        # Source addresses over the failed-key limit → time.monotonic() it ends.
        self._blocked: dict[str, float] = {}
        # A source this worker does not know to be blocked is asked about in
        # the shared set, requests of one loop turn in one round trip.
        self._shared_blocks: Coalescer[str, float | None] = Coalescer(
            self._blocks_left, max_batch=settings_http.batch_chunk
        )
        # Requests in flight on this worker share their Redis round trips.
        self._enqueue: Coalescer[tuple[Record, tuple[str, str] | None], bool] = Coalescer(
            self._flush, max_batch=settings_http.batch_chunk
        )

    async def _flush(self, items: list[tuple[Record, tuple[str, str] | None]]) -> list[bool]:
        """Persist the records, except those whose (account, number) is on the
        opt-out list; per item, whether it was left out for that."""
        checks = [(i, *optout) for i, (_, optout) in enumerate(items) if optout is not None]
        left_out = await self.store.enqueue_records([record for record, _ in items], checks)
        return [i in left_out for i in range(len(items))]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI route: a request gateway.ingress.http.protocol did not answer directly
        (one pipelined behind another on its connection)."""
        async def body() -> bytes | None:
            return await self._body(receive)

        answer = await self.answer(scope.get("client"), scope["headers"], body)
        if answer is None:
            return
        status, headers, content = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def answer(
        self, client: tuple[str, int] | None, headers: list[tuple[bytes, bytes]],
        body: Callable[[], Awaitable[bytes | None]],
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """The whole response (status, header lines, body) to one request, or
        None when the client went away before its body arrived. Called by
        gateway.ingress.http.protocol for a request it answers without ASGI, and by the
        ASGI route above."""
        try:
            answer = await self.submit(client, headers, body)
        except Exception as exc:
            answer = error_response(exc)
        if isinstance(answer, bytes):
            return 202, [(b"content-length", str(len(answer)).encode()),
                         (b"content-type", b"application/json")], answer
        if answer is None:
            return None
        return answer.status_code, answer.raw_headers, bytes(answer.body)

    async def submit(
        self, client: tuple[str, int] | None, request_headers: list[tuple[bytes, bytes]],
        read_body: Callable[[], Awaitable[bytes | None]],
    ) -> bytes | Response | None:
        """The 202 body of an accepted message, a Response for anything else, or
        None when the client went away before its body arrived."""
        headers: dict[bytes, bytes] = {}
        for name, value in request_headers:
            if name in _WANTED and name not in headers:
                headers[name] = value
        authorization = headers.get(b"authorization")
        name, account = await self._account(client, authorization)
        raw = await read_body()
        if raw is None:
            return None
        content_type = headers.get(b"content-type")
        data = parse_body(raw, content_type.decode("latin-1") if content_type else None)
        key = headers.get(b"idempotency-key")
        idempotency_key = key.decode("latin-1") if key is not None else None
        body, errors = validate(data, idempotency_key)
        if body is None:
            return invalid(errors)
        idem = idempotency(name, idempotency_key, raw, self.store.shards)
        if idem is not None:
            prior = await self.store.idempotent_response(idem[0])
            if prior is not None:
                return replay(prior, idem[1])
        message = self.admission.admit(name, account, submission(body, self.api.send_at_horizon),
                                       shard=idem[2] if idem else None)
        # Admission decides which opt-out may stop the message; the list is read
        # before the enqueue script: by the coalesced enqueue for a request
        # without a key, by admission before the key is claimed for one with a key.
        optout = self.admission.optout_key(name, message)
        accepted = orjson.dumps({
            "id": message.id, "status": "accepted", "parts": message.parts,
            "encoding": message.encoding,
        })
        if idem is None:
            if await self._enqueue.submit((self.store.record(message), optout)):
                raise _opted_out(message)
        else:
            if optout is not None and (await self.admission.opted_out(
                    self.store, name, [message]))[0]:
                raise _opted_out(message)
            replayed = await persist(self.store, self.api, name, [message], accepted, idem)
            if replayed is not None:
                return replayed
        metrics.count_status("queued")
        log.debug("accepted", message_id=message.id, to=message.to, parts=message.parts)
        return accepted

    async def authorize(self, scope: Scope) -> tuple[str, AccountSettings]:
        """The account of a request's API key, from its headers alone (every
        /v1 route asks this before its body is read)."""
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
                break
        return await self._account(scope.get("client"), authorization)

    async def _account(
        self, client: tuple[str, int] | None, authorization: bytes | None
    ) -> tuple[str, AccountSettings]:
        """The key's account; a source over `http.auth_failures` failed keys in
        the window gets 429 `rate_limited`, right key or not, until it ends.

        A block another worker or host set is read from Redis before the key
        is judged, not taken from this worker's copy of the set (refreshed
        only twice a second by `follow_blocks`, and empty until its first read
        after start-up): otherwise the right key from a just-blocked source
        got in on a worker that had not caught up, and a hit could be told
        from a miss."""
        source = client[0] if client else "unknown"
        left: float | None = None
        if self._blocked:
            until = self._blocked.get(source)
            if until is not None:
                left = until - time.monotonic()
                if left <= 0:
                    left = None
                    del self._blocked[source]
        if left is None:
            try:
                left = await self._shared_blocks.submit(source)
            except Exception:  # Redis away: what this worker knows stands, as for a 401
                left = None
            if left is not None:
                self._block(source, left)
        if left is not None:
            metrics.AUTH_FAILURES.labels("rate_limited").inc()
            raise _rate_limited(left)
        token = bearer_token(authorization.decode("latin-1") if authorization else None)
        try:
            return account_for(self.keys, token)
        except Problem as refused:
            await self._failed(source, token, refused)
            raise

    async def _failed(self, source: str, token: str, refused: Problem) -> None:
        """Count, log and meter one failed key; raises 429 once the source is over."""
        key_hash = hashlib.sha256(token.strip().encode()).hexdigest()[:12] if token.strip() else ""
        try:
            count, left = await self.store.auth_failed(source, self.api.auth_failure_window)
        except Exception as exc:  # Redis away: the 401 still stands
            log.warning("auth_failed", source=source, key_sha256_prefix=key_hash,
                        reason=refused.detail, counted=False, error=repr(exc))
            metrics.AUTH_FAILURES.labels("unauthorized").inc()
            return
        over = count > self.api.auth_failures
        log.warning("auth_failed", source=source, key_sha256_prefix=key_hash,
                    reason=refused.detail, failures=count, rate_limited=over)
        if not over:
            metrics.AUTH_FAILURES.labels("unauthorized").inc()
            return
        metrics.AUTH_FAILURES.labels("rate_limited").inc()
        self._block(source, left)
        try:
            await self.store.auth_block(source, left)  # every other worker and host
        except Exception as exc:
            log.warning("auth_block_not_shared", source=source, error=repr(exc))
        raise _rate_limited(left) from None

    async def _blocks_left(self, sources: list[str]) -> list[float | None]:
        unique = list(dict.fromkeys(sources))
        left = dict(zip(unique, await self.store.auth_blocks_left(unique), strict=True))
        return [left[source] for source in sources]

    def _block(self, source: str, seconds: float) -> None:
        if len(self._blocked) > 10_000:
            self._blocked.clear()
        self._blocked[source] = time.monotonic() + seconds

    async def follow_blocks(self, stop: asyncio.Event, interval: float = 0.5) -> None:
        """Take on the sources other workers and hosts blocked (Store.auth_block)
        every `interval` seconds, so their requests here are refused without a
        Redis call (and ended blocks leave the shared set)."""
        while not stop.is_set():
            for source, left in (await self.store.auth_blocked()).items():
                self._block(source, left)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass

    async def _body(self, receive: Receive) -> bytes | None:
        """The whole body (gateway.ingress.http.protocol has held it to `max_body_bytes`);
        None if the client disconnected."""
        chunks: list[bytes] = []
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                return None
            chunk = event.get("body", b"")
            if not event.get("more_body", False):
                return b"".join([*chunks, chunk]) if chunks else chunk
            chunks.append(chunk)
