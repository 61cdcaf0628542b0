"""Admission: turn one submitted message into a validated, routed Message.

Shared by every ingress (HTTP now, SMPP later) so the same input is judged the
same way whichever door it came through.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway import numbers
from gateway.config import AccountSettings, Settings
from gateway.model import Message, new_id
from gateway.routing import NoRoute, Router
from protocols.text import Concat, TextError, count_parts


class AdmissionError(ValueError):
    """A message we refuse, with the stable code clients program against."""

    def __init__(self, code: str, detail: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field
        self.status = status


@dataclass(slots=True)
class Submission:
    to: str
    sender: str
    text: str
    msg_class: str = "transactional"
    encoding: str = "auto"
    callback_url: str | None = None
    client_ref: str | None = None
    send_at: float | None = None
    validity: int | None = None
    batch_id: str | None = None


class Admission:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.router = Router(tuple(settings.routes))
        self._concat = {
            name: Concat(c.concat) if c.kind == "smpp" else Concat.UDH8
            for name, c in settings.connectors.items()
        }

    def admit(self, account_name: str, account: AccountSettings, sub: Submission) -> Message:
        try:
            e164, carrier, _tz = numbers.normalize(sub.to, account.default_region)
        except numbers.InvalidNumber as exc:
            raise AdmissionError("invalid_number", str(exc), "to") from exc
        try:
            connectors = self.router.route(account_name, sub.msg_class, e164, carrier, sub.sender)
        except NoRoute as exc:
            raise AdmissionError("no_route", str(exc), "to") from exc
        limits = self.settings.messages
        # Parts as the first connector of the route will cut them (UDH, SAR and
        # message_payload carry different amounts of text per submit_sm).
        try:
            encoding, parts = count_parts(sub.text, sub.encoding, self._concat[connectors[0]])
        except TextError as exc:
            raise AdmissionError(exc.code, str(exc), "text") from exc
        if parts > limits.max_parts:
            raise AdmissionError(
                "too_long",
                f"text needs {parts} parts ({encoding}); this gateway allows {limits.max_parts}",
                "text",
            )
        validity = sub.validity if sub.validity is not None else limits.default_validity
        if not 0 < validity <= limits.max_validity:
            raise AdmissionError(
                "invalid_validity",
                f"validity must be between 1 and {limits.max_validity} seconds",
                "validity",
            )
        now = time.time()
        start = max(now, sub.send_at or now)
        return Message(
            id=new_id(),
            account=account_name,
            to=e164,
            sender=sub.sender,
            text=sub.text,
            msg_class=sub.msg_class,
            encoding=str(encoding),
            parts=parts,
            created_at=now,
            expires_at=start + validity,
            connectors=connectors,
            carrier=carrier,
            callback_url=sub.callback_url or account.callback_url,
            client_ref=sub.client_ref,
            batch_id=sub.batch_id,
            send_at=sub.send_at,
        )
