"""The HTTP API (/v1), on FastAPI: pydantic validates bodies with field paths
and the OpenAPI document comes from the same models the server uses.

Every error leaves as RFC 9457 `application/problem+json` with a stable `code`;
nothing else (least of all a stack trace) reaches a client.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import batches, logs, metrics, numbers
from gateway.admission import Admission, AdmissionError, Submission
from gateway.config import AccountSettings, CallbackEvent, Settings
from gateway.model import Message, new_id
from gateway.store import Store, idem_key

log = logs.get("smsgw.api")

PROBLEM = "application/problem+json"


class Problem(Exception):
    def __init__(
        self, status: int, code: str, detail: str, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.errors = status, code, detail, errors


def problem_response(
    status: int, code: str, detail: str, errors: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"https://smsgw.dev/problems/{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM, headers=headers)


# --- request and response bodies -------------------------------------------


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: str = Field(min_length=1, max_length=32, description="Recipient, E.164 or national")
    sender: str = Field(alias="from", min_length=1, max_length=20)
    text: str = Field(min_length=1, max_length=10_000)
    msg_class: Literal["otp", "transactional", "marketing"] = Field(
        default="transactional", alias="class"
    )
    callback_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")
    callback_events: list[CallbackEvent] | None = Field(
        default=None,
        description="Statuses that make a callback; default: the account's (final ones)",
    )
    client_ref: str | None = Field(default=None, max_length=64)
    send_at: dt.datetime | None = None
    validity: int | None = Field(default=None, ge=1)
    encoding: Literal["auto", "gsm7", "ucs2"] = "auto"


class MessageAccepted(BaseModel):
    id: str
    status: str
    parts: int
    encoding: str


class HistoryEntry(BaseModel):
    status: str
    at: dt.datetime
    detail: str = ""


class MessageOut(BaseModel):
    id: str
    status: str
    to: str
    parts: int
    encoding: str
    message_class: str = Field(alias="class")
    connector: str | None
    carrier: str
    smsc_message_ids: dict[str, str]
    error_code: str | None
    client_ref: str | None
    batch_id: str | None
    created_at: dt.datetime
    history: list[HistoryEntry]


class FieldError(BaseModel):
    field: str
    message: str


class ProblemDetail(BaseModel):
    """RFC 9457 problem details; `code` is the stable, machine-readable part."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    errors: list[FieldError] | None = None


class RecipientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=32)
    vars: dict[str, str | int | float] = Field(
        default_factory=dict, description="Values for the template's {{name}} placeholders"
    )
    client_ref: str | None = Field(default=None, max_length=64)


class BatchIn(BaseModel):
    """Checked by gateway.batches (same rules, without a model per recipient)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sender: str = Field(alias="from", min_length=1, max_length=20)
    text: str = Field(min_length=1, max_length=10_000, description="Template with {{name}}")
    msg_class: Literal["otp", "transactional", "marketing"] = Field(
        default="transactional", alias="class"
    )
    callback_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")
    callback_events: list[CallbackEvent] | None = Field(
        default=None,
        description="Statuses that make a callback; default: the account's (final ones)",
    )
    send_at: dt.datetime | None = None
    validity: int | None = Field(default=None, ge=1)
    encoding: Literal["auto", "gsm7", "ucs2"] = "auto"
    messages: list[RecipientIn] = Field(min_length=1, max_length=10_000)


class BatchAcceptedItem(BaseModel):
    index: int
    id: str
    to: str


class BatchRejectedItem(BaseModel):
    index: int
    to: str
    code: str
    detail: str


class BatchAccepted(BaseModel):
    batch_id: str
    accepted: list[BatchAcceptedItem]
    rejected: list[BatchRejectedItem]


class BatchOut(BaseModel):
    batch_id: str
    total: int = Field(description="Messages accepted into the batch")
    counts: dict[str, int] = Field(description="Messages by current status")


class OptOutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(min_length=1, max_length=32)


class OptOut(BaseModel):
    number: str
    opted_out: bool


class OptOutPage(BaseModel):
    numbers: list[str]
    next_cursor: int | None = Field(description="Pass as cursor for the next page; null: done")


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Malformed JSON (`malformed_json`)",
        401: "Missing or unknown API key (`unauthorized`)",
        404: "No such resource for this account (`not_found`)",
        413: "Body over the configured limit (`payload_too_large`)",
        422: "Invalid request (`validation_error` with field paths, or a policy code such as "
        "`invalid_number`, `opted_out`, `too_long`, `idempotency_mismatch`)",
    }
    text[503] = "The message store did not answer (`store_unavailable`); retry"
    return {s: {"model": ProblemDetail, "description": text[s]} for s in (*statuses, 503)}


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


class BodyLimit:
    """413 for bodies over the configured size, counted as they stream in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await problem_response(
                    413, "payload_too_large", f"body over {self.limit} bytes"
                )(scope, receive, send)
                return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            event = await receive()
            seen += len(event.get("body", b""))
            if seen > self.limit:
                raise Problem(413, "payload_too_large", f"body over {self.limit} bytes")
            return event

        await self.app(scope, counted, send)


_bearer = HTTPBearer(auto_error=False, description="The account's API key")


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> tuple[str, AccountSettings]:
    token = credentials.credentials if credentials is not None else ""
    if not token.strip():
        raise Problem(401, "unauthorized", "send Authorization: Bearer <api key>")
    # Keys are looked up by their SHA-256, so no comparison ever runs over the
    # secret itself and its timing says nothing about it.
    found = request.app.state.api_keys.get(hashlib.sha256(token.strip().encode()).digest())
    if found is None:
        raise Problem(401, "unauthorized", "unknown API key")
    return found  # type: ignore[no-any-return]


Auth = Annotated[tuple[str, AccountSettings], Depends(authenticate)]


IdemKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key", min_length=1, max_length=255,
        description="A retry with the same key within 24 h returns the first response "
        "and queues nothing; the same key with another body is `idempotency_mismatch`.",
    ),
]
NumberPath = Annotated[
    str, Path(min_length=1, max_length=32, description="E.164 or national number")
]


def create_app(settings: Settings, store: Store, worker: int = 0) -> FastAPI:
    admission = Admission(settings)

    app = FastAPI(
        title="smsgw",
        version="1",
        description="High-throughput SMS gateway API. Errors are RFC 9457 problem+json.",
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, limit=settings.http.max_body_bytes)
    app.state.api_keys = {
        digest: (name, account)
        for name, account in settings.accounts.items()
        for digest in account.key_digests()
    }

    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> Response:
        return problem_response(exc.status, exc.code, exc.detail, exc.errors)

    @app.exception_handler(AdmissionError)
    async def _admission(_request: Request, exc: AdmissionError) -> Response:
        metrics.POLICY_REJECTIONS.labels(exc.code).inc()
        errors = [{"field": exc.field, "message": exc.detail}] if exc.field else None
        return problem_response(exc.status, exc.code, exc.detail, errors)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem_response(400, "malformed_json", "the body is not valid JSON")
        fields = [
            {
                "field": ".".join(str(p) for p in e["loc"] if p != "body"),
                "message": e["msg"],
            }
            for e in errors
        ]
        return problem_response(422, "validation_error", "the request is not valid", fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        # Starlette puts Allow on its 405s (RFC 9110 §15.5.6 requires it).
        return problem_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RedisError)
    async def _store_down(_request: Request, exc: RedisError) -> Response:
        log.error("store_unavailable", error=repr(exc))
        response = problem_response(
            503, "store_unavailable",
            "the message store did not answer; retry with the same Idempotency-Key",
        )
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(Exception)
    async def _crash(_request: Request, exc: Exception) -> Response:
        log.error("unhandled_error", error=repr(exc), exc_info=exc)
        return problem_response(500, "internal_error", "the gateway could not handle this request")

    api = settings.http

    async def idempotency(
        request: Request, account: str, key: str | None
    ) -> tuple[str, str] | None:
        """(Redis key, body hash) for a keyed request, or None without a key."""
        if key is None:
            return None
        digest = hashlib.sha256(key.encode()).hexdigest()
        return idem_key(account, digest), hashlib.sha256(await request.body()).hexdigest()

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
        account: str,
        messages: list[Message],
        response: bytes,
        idem: tuple[str, str] | None,
        batch_id: str | None = None,
    ) -> Response | None:
        """Queue the messages (claiming the idempotency key with the first chunk);
        a Response when an earlier request owns the key."""
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

    @app.post(
        "/v1/messages", status_code=202, response_model=MessageAccepted,
        responses=_problems(400, 401, 413, 422), tags=["messages"],
    )
    async def submit(
        request: Request, body: MessageIn, auth: Auth, idempotency_key: IdemKey = None
    ) -> Response:
        """Queue one message. `202` means it is persisted in Redis."""
        name, account = auth
        idem = await idempotency(request, name, idempotency_key)
        if idem is not None:
            prior = await store.idempotent_response(idem[0])
            if prior is not None:
                return replay(prior, idem[1])
        message = admission.admit(
            name,
            account,
            Submission(
                to=body.to,
                sender=body.sender,
                text=body.text,
                msg_class=body.msg_class,
                encoding=body.encoding,
                callback_url=body.callback_url,
                callback_events=body.callback_events,
                client_ref=body.client_ref,
                send_at=body.send_at.timestamp() if body.send_at else None,
                validity=body.validity,
            ),
        )
        if message.msg_class == "marketing" and await store.optout_has(name, message.to):
            raise AdmissionError(
                "opted_out", f"{numbers.mask(message.to)} opted out of marketing", "to"
            )
        accepted = orjson.dumps({
            "id": message.id, "status": "accepted", "parts": message.parts,
            "encoding": message.encoding,
        })
        replayed = await persist(name, [message], accepted, idem)
        if replayed is not None:
            return replayed
        metrics.count_status("queued")
        log.debug("accepted", message_id=message.id, to=message.to, parts=message.parts)
        return Response(accepted, status_code=202, media_type="application/json")

    @app.post(
        "/v1/messages/batch", status_code=202, response_model=BatchAccepted,
        responses=_problems(400, 401, 413, 422), tags=["messages"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/BatchIn"}}
                },
            }
        },
    )
    async def submit_batch(
        request: Request, auth: Auth, idempotency_key: IdemKey = None
    ) -> Response:
        """Queue one template for up to 10,000 recipients. A recipient that cannot be
        sent is listed under `rejected` with its code; the others are queued."""
        name, account = auth
        raw = await request.body()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Problem(400, "malformed_json", "the body is not valid JSON") from None
        try:
            req = batches.parse(data, api.batch_max_recipients)
        except batches.InvalidBatch as exc:
            raise Problem(
                422, "validation_error", "the request is not valid", exc.errors
            ) from None
        idem = await idempotency(request, name, idempotency_key)
        if idem is not None:
            prior = await store.idempotent_response(idem[0])
            if prior is not None:
                return replay(prior, idem[1])
        batch_id = new_id()
        messages, accepted, rejected = await batches.admit(
            admission, name, account, req, batch_id
        )
        if req.msg_class == "marketing" and messages:
            opted = await store.optout_many(name, [m.to for m in messages])
            if any(opted):
                kept = []
                for (index, m), out in zip(accepted, opted, strict=True):
                    if out:
                        rejected.append({
                            "index": index, "to": req.messages[index]["to"], "code": "opted_out",
                            "detail": f"{numbers.mask(m.to)} opted out of marketing",
                        })
                    else:
                        kept.append((index, m))
                accepted = kept
                messages = [m for _, m in kept]
                rejected.sort(key=lambda r: r["index"])
        for r in rejected:
            metrics.POLICY_REJECTIONS.labels(r["code"]).inc()
        response = orjson.dumps({
            "batch_id": batch_id,
            "accepted": [{"index": i, "id": m.id, "to": m.to} for i, m in accepted],
            "rejected": rejected,
        })
        replayed = await persist(name, messages, response, idem, batch_id)
        if replayed is not None:
            return replayed
        metrics.MESSAGES.labels("queued").inc(len(messages))
        log.info("batch_accepted", batch_id=batch_id, accepted=len(messages),
                 rejected=len(rejected))
        return Response(response, status_code=202, media_type="application/json")

    @app.get(
        "/v1/batches/{batch_id}", response_model=BatchOut, responses=_problems(401, 404, 422),
        tags=["messages"],
    )
    async def get_batch(batch_id: str, auth: Auth) -> Response:
        """Counts of the batch's messages by status."""
        owner = await store.batch_owner(batch_id) if len(batch_id) <= 64 else None
        if owner != auth[0]:
            raise Problem(404, "not_found", "no such batch")
        counts = await store.batch_counts(batch_id)
        total = counts.pop("total", 0)
        body = {"batch_id": batch_id, "total": total,
                "counts": {k: v for k, v in sorted(counts.items()) if v}}
        return Response(orjson.dumps(body), media_type="application/json")

    def e164(account: AccountSettings, number: str, field: str) -> str:
        try:
            return numbers.normalize(number, account.default_region)[0]
        except numbers.InvalidNumber as exc:
            raise AdmissionError("invalid_number", str(exc), field) from exc

    @app.get(
        "/v1/optouts", response_model=OptOutPage, responses=_problems(401, 422),
        tags=["opt-outs"],
    )
    async def list_optouts(
        auth: Auth,
        cursor: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        """The account's suppression list, a page at a time (Redis SSCAN order)."""
        nxt, page = await store.optout_page(auth[0], cursor, limit)
        body = {"numbers": page, "next_cursor": nxt or None}
        return Response(orjson.dumps(body), media_type="application/json")

    @app.post(
        "/v1/optouts", status_code=201, response_model=OptOut,
        responses=_problems(400, 401, 413, 422), tags=["opt-outs"],
    )
    async def add_optout(body: OptOutIn, auth: Auth) -> Response:
        """Suppress marketing to a number (idempotent)."""
        number = e164(auth[1], body.number, "number")
        await store.optout_add(auth[0], number)
        return Response(
            orjson.dumps({"number": number, "opted_out": True}), status_code=201,
            media_type="application/json",
        )

    @app.get(
        "/v1/optouts/{number}", response_model=OptOut, responses=_problems(401, 404, 422),
        tags=["opt-outs"],
    )
    async def get_optout(number: NumberPath, auth: Auth) -> Response:
        normal = e164(auth[1], number, "number")
        if not await store.optout_has(auth[0], normal):
            raise Problem(404, "not_found", "this number is not on the opt-out list")
        return Response(
            orjson.dumps({"number": normal, "opted_out": True}), media_type="application/json"
        )

    @app.delete(
        "/v1/optouts/{number}", status_code=204, responses=_problems(401, 404, 422),
        tags=["opt-outs"],
    )
    async def delete_optout(number: NumberPath, auth: Auth) -> Response:
        """Take a number off the list, so marketing reaches it again."""
        normal = e164(auth[1], number, "number")
        if not await store.optout_remove(auth[0], normal):
            raise Problem(404, "not_found", "this number is not on the opt-out list")
        return Response(status_code=204)

    @app.get(
        "/v1/messages/{message_id}", response_model=MessageOut,
        responses=_problems(401, 404, 422), tags=["messages"],
    )
    async def get_message(message_id: str, auth: Auth) -> Response:
        """Current status, parts, connector, carrier, SMSC ids, error code and history."""
        state = await store.get(message_id) if len(message_id) <= 64 else None
        if state is None or state.message.account != auth[0]:
            # Another account's message is indistinguishable from a missing one.
            raise Problem(404, "not_found", "no such message")
        m = state.message
        out = {
            "id": m.id,
            "status": state.status,
            "to": m.to,
            "parts": m.parts,
            "encoding": m.encoding,
            "class": m.msg_class,
            "connector": state.connector,
            "carrier": m.carrier,
            "smsc_message_ids": {str(k): v for k, v in sorted(state.smsc_ids.items())},
            "error_code": state.error_code,
            "client_ref": m.client_ref,
            "batch_id": m.batch_id,
            "created_at": _utc(m.created_at).isoformat(),
            "history": [
                {"status": s, "at": _utc(ts).isoformat(), "detail": d}
                for ts, s, d in state.history
            ],
        }
        return Response(orjson.dumps(out), media_type="application/json")

    def openapi() -> dict[str, Any]:
        """FastAPI's document, plus what it cannot infer: the batch body (checked by
        gateway.batches, not by a FastAPI body parameter) and problem responses
        served as application/problem+json."""
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            batch = BatchIn.model_json_schema(
                by_alias=True, ref_template="#/components/schemas/{model}"
            )
            schemas.update(batch.pop("$defs", {}))
            schemas["BatchIn"] = batch
            for ops in doc["paths"].values():
                for op in ops.values():
                    for status, resp in op.get("responses", {}).items():
                        content = resp.get("content", {})
                        if status[0] in "45" and "application/json" in content:
                            content[PROBLEM] = content.pop("application/json")
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        try:
            await store.redis.ping()
        except Exception:
            return problem_response(503, "not_ready", "Redis is not reachable")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        """Every worker of this host together: this one's counts now, the others'
        as they last published them (`metrics.PUBLISH_EVERY`)."""
        try:
            await store.publish_metrics(metrics.HOST, worker, metrics.snapshot())
            snapshots = await store.host_metrics(metrics.HOST)
        except Exception:  # Redis away: this worker's own view is better than none
            return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
        return Response(metrics.render_merged(snapshots), media_type=CONTENT_TYPE_LATEST)

    return app
