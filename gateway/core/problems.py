"""The one exception type for an answer a request gets as an RFC 9457 problem.

Raised by any stage that answers HTTP (ingress/http, receipts/provider_http);
gateway/ingress/http/problems.py turns it into the problem+json response, and
`ProblemDetail` in gateway/ingress/http/app.py is its schema in the OpenAPI
document.
"""

from __future__ import annotations


class Problem(Exception):
    def __init__(
        self, status: int, code: str, detail: str, errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.errors = status, code, detail, errors
        self.headers = headers
