"""`POST /v1/receipts/{connector}`: delivery reports from HTTP providers.

Each HTTP connector has its own bearer token (its `receipt_token`), so one
provider cannot report on another's messages. The report is read by the
connector's configured JSON paths into the same `Receipt` an SMPP connector
emits, and handled by the same `Receipts.on_receipts`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Response

from gateway.connectors.http import dig
from gateway.core.config import ConnectorSettings
from gateway.core.events import Receipt
from gateway.core.problems import Problem
from gateway.receipts.dlr import Receipts


def receipts_router(connectors: Mapping[str, ConnectorSettings], receipts: Receipts
                    ) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/receipts/{connector}", status_code=204, include_in_schema=False)
    async def provider_receipt(
        connector: str,
        body: Annotated[dict[str, Any], Body()],
        authorization: Annotated[str | None, Header()] = None,
    ) -> Response:
        conn = connectors.get(connector)
        if conn is None or conn.kind != "http":
            raise Problem(404, "not_found", "no such HTTP connector")
        token = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(token.encode(), conn.receipt_token.encode()):
            raise Problem(401, "unauthorized", "wrong receipt token")
        provider_id = dig(body, conn.receipt_id_path)
        status = dig(body, conn.receipt_status_path)
        if provider_id in (None, "") or status is None:
            raise Problem(
                422, "invalid_receipt",
                f"need {conn.receipt_id_path!r} and {conn.receipt_status_path!r}",
            )
        stat = conn.receipt_status_map.get(str(status), str(status).upper())
        err = dig(body, conn.receipt_error_path)
        await receipts.on_receipts([Receipt.of(connector, str(provider_id), conn.receipt_id_format,
                                               stat, "" if err is None else str(err))])
        return Response(status_code=204)

    return router
