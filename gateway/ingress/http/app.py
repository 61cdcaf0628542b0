"""The HTTP API (/v1), on FastAPI: pydantic validates bodies with field paths
and the OpenAPI document comes from the same models the server uses.

`POST /v1/messages` is answered in front of FastAPI by gateway.ingress.http.submit (one
message per request is the path where FastAPI's own cost dominated); it is
declared here for the document only.

Every error leaves as RFC 9457 `application/problem+json` with a stable `code`
(gateway.ingress.http.problems); nothing else (least of all a stack trace) reaches a client.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.admission.admit import Admission, AdmissionError
from gateway.core import logs, metrics, numbers
from gateway.core.config import AccountSettings, CallbackEvent, Settings
from gateway.core.model import MessageClass, new_id
from gateway.core.problems import Problem
from gateway.ingress.http import batches
from gateway.ingress.http.auth import AUTH_SCOPE_KEY, account_for, key_table
from gateway.ingress.http.problems import (
    PROBLEM,
    error_response,
    invalid,
    malformed_json,
    problem_response,
)
from gateway.ingress.http.submit import (
    MISSING,
    IdemKey,
    MessageAccepted,
    MessageIn,
    Submitter,
    idempotency,
    json_type,
    parse_body,
    persist,
    replay,
)
from gateway.ingress.http.submit import (
    PATH as SUBMIT_PATH,
)
from gateway.store import RedisError, Store

log = logs.get("smsgw.api")


# --- request and response bodies (MessageIn, MessageAccepted: gateway.ingress.http.submit) ------


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
    smsc_message_ids: dict[str, str] = Field(
        description="The SMSC's own message id of each part it acknowledged, by part number "
        "(0: a provider that took the whole text), exactly as it wrote it in submit_sm_resp "
        "(or the HTTP provider's response): not normalised, so it can be looked up in the "
        "carrier's records. Receipts are matched on a normalised form (hex/decimal, case, "
        "leading zeros) that is never shown.",
        examples=[{"1": "0c2800000001", "2": "0c2800000002"}],
    )
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
    """Checked by gateway.ingress.http.batches (same rules, without a model per recipient)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sender: str = Field(alias="from", min_length=1, max_length=20)
    text: str = Field(min_length=1, max_length=10_000, description="Template with {{name}}")
    msg_class: MessageClass = Field(
        default="transactional", alias="class"
    )
    callback_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")
    callback_events: list[CallbackEvent] | None = Field(
        default=None,
        description="Statuses that make a callback; default: the account's (final ones)",
    )
    # Any: every value is judged by admission.parse_send_at (invalid_send_at).
    send_at: Any = Field(
        default=None, json_schema_extra={"anyOf": [{"type": "string", "format": "date-time"},
                                      {"type": "null"}]},
        description="RFC 3339 with an offset, at most http.send_at_horizon ahead",
    )
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


def _json_body_type(scope: Scope) -> None:
    """415 for a body whose Content-Type is not JSON (before it is read)."""
    content_type = length = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            chunked = True
    if (chunked or (length is not None and length != b"0")) and not (
        content_type and json_type(content_type)
    ):
        raise Problem(415, "unsupported_media_type",
                      "send the body as Content-Type: application/json")


_bearer = HTTPBearer(auto_error=False, description="The account's API key")


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> tuple[str, AccountSettings]:
    known: tuple[str, AccountSettings] | None = request.scope.get(AUTH_SCOPE_KEY)
    if known is not None:  # checked by Api before the body was read
        return known
    token = credentials.credentials if credentials is not None else ""
    return account_for(request.app.state.api_keys, token)


Auth = Annotated[tuple[str, AccountSettings], Depends(authenticate)]


NumberPath = Annotated[
    str, Path(min_length=1, max_length=32, description="E.164 or national number")
]


class Api(FastAPI):
    """FastAPI, except that `POST /v1/messages` is handed to gateway.ingress.http.submit
    before FastAPI's middleware stack runs (the router has the route too, so
    other methods and `/v1/messages/` get the answers they always got)."""

    submitter: Submitter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == SUBMIT_PATH and scope["method"] == "POST":
                await self.submitter(scope, receive, send)
                return
            if path.startswith("/v1/") and not path.startswith("/v1/receipts/"):
                # The API key before the body is read or parsed (docs/http-api.md).
                try:
                    scope[AUTH_SCOPE_KEY] = await self.submitter.authorize(scope)
                    if scope["method"] in ("POST", "PUT", "PATCH"):
                        _json_body_type(scope)
                except Exception as exc:
                    await error_response(exc)(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


async def submit(body: MessageIn, auth: Auth, idempotency_key: IdemKey = None) -> None:
    """Queue one message. `202` means it is persisted in Redis."""


# Served by gateway.ingress.http.submit, never routed by FastAPI: the declaration gives the
# OpenAPI document its body, header, responses and operation id (the
# function's name, as when it was a FastAPI route).
SUBMIT_DECLARATION = APIRoute(
    SUBMIT_PATH, submit, methods=["POST"], status_code=202, response_model=MessageAccepted,
    responses=_problems(400, 401, 413, 422), tags=["messages"],
)


def create_app(settings: Settings, store: Store, worker: int = 0) -> Api:
    admission = Admission(routes=settings.routes, accounts=settings.accounts,
                          connectors=settings.connectors, messages=settings.messages)

    app = Api(
        title="smsgw",
        version="1",
        description="High-throughput SMS gateway API. Errors are RFC 9457 problem+json.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.api_keys = key_table(settings)
    app.submitter = Submitter(settings.http, store, admission, app.state.api_keys)
    app.router.routes.append(Route(SUBMIT_PATH, app.submitter, methods=["POST"]))

    async def _error(_request: Request, exc: Exception) -> Response:
        return error_response(exc)

    for kind in (Problem, AdmissionError, RedisError, Exception):
        app.add_exception_handler(kind, _error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return malformed_json()
        return invalid(errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:  # FastAPI could not read the body (e.g. not UTF-8)
            return malformed_json()
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        # Starlette puts Allow on its 405s (RFC 9110 §15.5.6 requires it).
        return problem_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    api = settings.http

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
        data = parse_body(raw, request.headers.get("content-type") or "application/json")
        if data is MISSING:
            raise Problem(400, "malformed_json", "the body is not valid JSON")
        try:
            req = batches.parse(data, api.batch_max_recipients, api.send_at_horizon)
        except batches.InvalidBatch as exc:
            raise Problem(
                422, "validation_error", "the request is not valid", exc.errors
            ) from None
        idem = idempotency(name, idempotency_key, raw, store.shards)
        if idem is not None:
            prior = await store.idempotent_response(idem[0])
            if prior is not None:
                return replay(prior, idem[1])
        batch_id = new_id(idem[2] if idem else None)
        messages, accepted, rejected = await batches.admit(
            admission, name, account, req, batch_id
        )
        opted = await admission.opted_out(store, name, messages)
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
        replayed = await persist(store, api, name, messages, response, idem, batch_id)
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
        """Current status, parts, connector, carrier, SMSC ids (as the SMSC wrote
        them), error code and history."""
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
        """FastAPI's document, plus what it cannot infer: POST /v1/messages (served
        by gateway.ingress.http.submit), the batch body (checked by
        gateway.ingress.http.batches, not by a FastAPI body parameter) and problem
        responses served as application/problem+json."""
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=[SUBMIT_DECLARATION, *app.routes],
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
    async def healthz() -> dict[str, object]:
        """Liveness only: this process runs its event loop. Whether it can do its
        work (Redis, dispatchers) is /readyz."""
        return {"status": "alive", "worker": worker, "pid": os.getpid()}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        try:
            await asyncio.wait_for(store.ping(), 1.0)
        except Exception:
            return problem_response(503, "not_ready", "Redis is not reachable")
        # Set by gateway.run.worker.serve: which long-running tasks run right now.
        health = getattr(request.app.state, "task_health", None)
        if health is not None and health.dispatchers() and not health.dispatchers_running():
            return problem_response(503, "not_ready", "no dispatcher is running in this worker")
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
