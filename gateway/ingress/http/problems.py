"""RFC 9457 problem details: how every error of the HTTP API leaves the gateway.

One place maps an exception to its answer, so FastAPI's exception handlers and
the single-message route that runs before FastAPI (gateway.ingress.http.submit) cannot give
the same failure two different answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from starlette.responses import Response

from gateway.admission.admit import AdmissionError
from gateway.core import logs, metrics
from gateway.core.problems import Problem
from gateway.store import RedisError

log = logs.get("smsgw.api")

PROBLEM = "application/problem+json"


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
        # Answered before the body is read: the connection closes rather than
        # reading (and discarding) whatever body follows.
        headers["Connection"] = "close"
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM, headers=headers)


def field_path(loc: Iterable[Any]) -> str:
    """A pydantic error location as the `field` clients see: `to`, `class`,
    `messages.1.to`, `header.Idempotency-Key` (FastAPI's `body` prefix left out)."""
    return ".".join(str(p) for p in loc if p != "body")


def invalid(errors: Iterable[dict[str, Any]]) -> Response:
    """422 validation_error listing pydantic-style errors (loc, msg) by field."""
    fields = [{"field": field_path(e["loc"]), "message": e["msg"]} for e in errors]
    return problem_response(422, "validation_error", "the request is not valid", fields)


def malformed_json() -> Response:
    return problem_response(400, "malformed_json", "the body is not valid JSON")


def error_response(exc: Exception) -> Response:
    """The answer to an exception raised while handling a request."""
    if isinstance(exc, Problem):
        return problem_response(exc.status, exc.code, exc.detail, exc.errors, exc.headers)
    if isinstance(exc, AdmissionError):
        metrics.POLICY_REJECTIONS.labels(exc.code).inc()
        errors = [{"field": exc.field, "message": exc.detail}] if exc.field else None
        return problem_response(exc.status, exc.code, exc.detail, errors)
    if isinstance(exc, RedisError):
        log.error("store_unavailable", error=repr(exc))
        response = problem_response(
            503, "store_unavailable",
            "the message store did not answer; retry with the same Idempotency-Key",
        )
        response.headers["Retry-After"] = "1"
        return response
    log.error("unhandled_error", error=repr(exc), exc_info=exc)
    return problem_response(500, "internal_error", "the gateway could not handle this request")
