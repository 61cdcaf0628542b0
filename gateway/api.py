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
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import logs, metrics
from gateway.admission import Admission, AdmissionError, Submission
from gateway.config import AccountSettings, Settings
from gateway.store import Store

log = logs.get("smsgw.api")

PROBLEM = "application/problem+json"


class Problem(Exception):
    def __init__(
        self, status: int, code: str, detail: str, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.errors = status, code, detail, errors


def problem_response(status: int, code: str, detail: str, errors: Any = None) -> Response:
    body: dict[str, Any] = {
        "type": f"https://smsgw.dev/problems/{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
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


async def authenticate(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> tuple[str, AccountSettings]:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "unauthorized", "send Authorization: Bearer <api key>")
    # Keys are looked up by their SHA-256, so no comparison ever runs over the
    # secret itself and its timing says nothing about it.
    found = request.app.state.api_keys.get(hashlib.sha256(token.strip().encode()).digest())
    if found is None:
        raise Problem(401, "unauthorized", "unknown API key")
    return found  # type: ignore[no-any-return]


Auth = Annotated[tuple[str, AccountSettings], Depends(authenticate)]


def create_app(settings: Settings, store: Store) -> FastAPI:
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
        return problem_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _crash(_request: Request, exc: Exception) -> Response:
        log.error("unhandled_error", error=repr(exc), exc_info=exc)
        return problem_response(500, "internal_error", "the gateway could not handle this request")

    @app.post("/v1/messages", status_code=202, response_model=MessageAccepted)
    async def submit(body: MessageIn, auth: Auth) -> Response:
        name, account = auth
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
                client_ref=body.client_ref,
                send_at=body.send_at.timestamp() if body.send_at else None,
                validity=body.validity,
            ),
        )
        await store.enqueue([message])
        metrics.MESSAGES.labels("queued").inc()
        log.debug("accepted", message_id=message.id, to=message.to, parts=message.parts)
        accepted = {
            "id": message.id, "status": "accepted", "parts": message.parts,
            "encoding": message.encoding,
        }
        return Response(orjson.dumps(accepted), status_code=202, media_type="application/json")

    @app.get("/v1/messages/{message_id}", response_model=MessageOut)
    async def get_message(message_id: str, auth: Auth) -> Response:
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
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
