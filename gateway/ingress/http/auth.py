"""API keys: `Authorization: Bearer <key>` to the account it belongs to.

Shared by FastAPI's dependency (gateway.ingress.http.app.authenticate) and the route that
runs before FastAPI (gateway.ingress.http.submit), so both read the header the same way.
"""

from __future__ import annotations

import hashlib

from fastapi.security.utils import get_authorization_scheme_param

from gateway.core.config import AccountSettings, Settings
from gateway.core.problems import Problem

Keys = dict[bytes, tuple[str, AccountSettings]]
# Where gateway.ingress.http.app.Api leaves the account it authenticated, for FastAPI's dependency.
AUTH_SCOPE_KEY = "smsgw.auth"


def key_table(settings: Settings) -> Keys:
    """SHA-256 of every API key → (account name, account)."""
    return {
        digest: (name, account)
        for name, account in settings.accounts.items()
        for digest in account.key_digests()
    }


def bearer_token(authorization: str | None) -> str:
    """The credentials of a Bearer Authorization header, read as FastAPI's
    HTTPBearer reads them ('' when there are none or the scheme is another)."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return ""
    return credentials


def account_for(keys: Keys, token: str) -> tuple[str, AccountSettings]:
    if not token.strip():
        raise Problem(401, "unauthorized", "send Authorization: Bearer <api key>")
    # Keys are looked up by their SHA-256, so no comparison ever runs over the
    # secret itself and its timing says nothing about it.
    found = keys.get(hashlib.sha256(token.strip().encode()).digest())
    if found is None:
        raise Problem(401, "unauthorized", "unknown API key")
    return found
